"""Fixtures for RL tests: a tiny untrained model saved as a model directory (what `trident sft`
writes), built from a config with the shared tiny tokenizer."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_tokenizer, tmp_path_factory):
    from pretrain.model import BackboneConfig, DiffusionLM

    folder = tmp_path_factory.mktemp("rl-model") / "model"
    cfg = BackboneConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)
    DiffusionLM.build(cfg, tiny_tokenizer, slot_len=24, max_prompt=48, seed=0).save(folder)
    return folder
