"""Shared fixtures: real networkx tasks (mined once per session), a tiny tokenizer trained on
them, and tiny models built from configs."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

SMALL_FILES = ["algorithms/tests/test_isolate.py", "algorithms/tests/test_boundary.py",
               "algorithms/tests/test_dominance.py"]


@pytest.fixture(scope="session")
def small_tasks_file(tmp_path_factory):
    """~75 real tasks from three test files; every fifth is moved to the valid split so that a
    tiny run has both splits (the miner splits by file, and three files fall as they may)."""
    from sandbox.mining import MineConfig, mine
    from sandbox.tasks import load_tasks, write_tasks

    folder = tmp_path_factory.mktemp("pretrain-mine")
    mined = folder / "mined.jsonl"
    mine(MineConfig(out=mined, files=SMALL_FILES, workers=1, progress=False))
    tasks = load_tasks(mined)
    out = folder / "tasks.jsonl"
    write_tasks(out, (dataclasses.replace(t, split="valid" if i % 5 == 4 else "train") for i, t in enumerate(tasks)),
                package="networkx")
    return out


@pytest.fixture(scope="session")
def small_tasks(small_tasks_file):
    from sandbox.tasks import load_tasks

    return load_tasks(small_tasks_file)


@pytest.fixture(scope="session")
def tiny_tokenizer(small_tasks):
    from pretrain.tokenizer import task_texts, train_tokenizer

    return train_tokenizer(task_texts(small_tasks), vocab_size=600)


@pytest.fixture
def tiny_backbone():
    from pretrain.model import BackboneConfig

    return BackboneConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=128)


@pytest.fixture
def tiny_model(tiny_tokenizer, tiny_backbone):
    from pretrain.model import DiffusionLM

    return DiffusionLM.build(tiny_backbone, tiny_tokenizer, slot_len=24, max_prompt=48, seed=0).eval()
