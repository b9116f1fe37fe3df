"""bench/weight_average.py: the average of models trained from one base, from model directories
and RL checkpoint folders alike; refusals name the source and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from pretrain.model import DiffusionLM
from rl.driver import LEARNER_FILE

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "weight_average.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_average_of_a_model_dir_and_a_checkpoint_is_the_mean(tiny_model, tiny_tokenizer, tiny_backbone, tmp_path):
    tiny_model.save(tmp_path / "base")
    other = DiffusionLM.build(tiny_backbone, tiny_tokenizer, slot_len=24, max_prompt=48, seed=1)
    other.save(tmp_path / "a")
    third = DiffusionLM.build(tiny_backbone, tiny_tokenizer, slot_len=24, max_prompt=48, seed=2)
    (tmp_path / "ckpt").mkdir()
    torch.save({"model": third.state_dict(), "updates": 3}, tmp_path / "ckpt" / LEARNER_FILE)

    r = _run("--base", tmp_path / "base", "--out", tmp_path / "soup", tmp_path / "a", tmp_path / "ckpt")
    assert r.returncode == 0, r.stderr
    soup = DiffusionLM.load(tmp_path / "soup").state_dict()
    a, c = other.state_dict(), third.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)
    for k in soup:
        torch.testing.assert_close(soup[k], (a[k] + c[k]) / 2)

    again = _run("--base", tmp_path / "base", "--out", tmp_path / "soup", tmp_path / "a")
    assert again.returncode != 0 and "exists" in again.stderr and "soup" in again.stderr


def test_refuses_a_source_that_is_no_model_and_one_of_another_architecture(tiny_model, tiny_tokenizer, tmp_path):
    from pretrain.model import BackboneConfig

    tiny_model.save(tmp_path / "base")
    r = _run("--base", tmp_path / "base", "--out", tmp_path / "soup", tmp_path)
    assert r.returncode != 0 and "neither a model directory" in r.stderr and "iter_NNNNNN" in r.stderr
    wider = BackboneConfig(hidden_size=48, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=128)
    DiffusionLM.build(wider, tiny_tokenizer, slot_len=24, max_prompt=48, seed=0).save(tmp_path / "wide")
    r = _run("--base", tmp_path / "base", "--out", tmp_path / "soup", tmp_path / "wide")
    assert r.returncode != 0 and "another architecture" in r.stderr
    assert not (tmp_path / "soup").exists()
