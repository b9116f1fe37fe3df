"""DiffusionLM: tokenizer specials, save/load round trip, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from pretrain.data import DataConfig, Encoder, collate
from pretrain.errors import ModelError, TokenizerError
from pretrain.model import DiffusionLM
from pretrain.tokenizer import SPECIAL_TOKENS, SpecialIds, load_tokenizer, save_tokenizer


def test_special_ids_come_from_the_tokenizer_and_round_trip(tiny_tokenizer, tmp_path):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    assert len(set(ids.all())) == len(SPECIAL_TOKENS)
    assert [tiny_tokenizer.convert_ids_to_tokens(i) for i in ids.all()] == list(SPECIAL_TOKENS)
    save_tokenizer(tiny_tokenizer, tmp_path)
    again = load_tokenizer(tmp_path)
    assert SpecialIds.from_tokenizer(again) == ids
    text = "assert nx.number_of_isolates(G) == 2"
    assert again(text, add_special_tokens=False)["input_ids"] == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert again.decode(again(text, add_special_tokens=False)["input_ids"]) == text


def test_save_load_gives_identical_logits_and_critic(tiny_model, small_tasks, tmp_path):
    tiny_model.mask_logit_bias = 1.25
    enc = Encoder(tiny_model.tokenizer, DataConfig(slot_len=24, max_prompt=48))
    batch = collate([enc.encode(t) for t in small_tasks[:4] if enc.encode(t)], tiny_model.special, 0.05)
    with torch.no_grad():
        before = tiny_model(batch.input_ids, batch.attention_mask)
    tiny_model.save(tmp_path / "m")
    loaded = DiffusionLM.load(tmp_path / "m").eval()
    with torch.no_grad():
        after = loaded(batch.input_ids, batch.attention_mask)
    assert torch.equal(before.logits, after.logits)
    assert torch.equal(before.critic, after.critic)
    assert loaded.mask_logit_bias == 1.25 and loaded.slot_len == 24 and loaded.max_prompt == 48
    assert loaded.lm_head.weight.data_ptr() == loaded.backbone.get_input_embeddings().weight.data_ptr()  # still tied


def test_loading_a_non_model_folder_or_corrupt_weights_is_one_clear_error(tiny_model, tmp_path):
    with pytest.raises(ModelError, match="not a Trident model directory"):
        DiffusionLM.load(tmp_path)
    tiny_model.save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="corrupt"):
        DiffusionLM.load(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "trident_model.json").read_text())
    meta["version"] = 99
    (tmp_path / "m" / "trident_model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="version 99"):
        DiffusionLM.load(tmp_path / "m")


def test_a_tokenizer_without_trident_specials_is_refused(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.json missing"):
        load_tokenizer(tmp_path)


def test_slot_is_the_last_L_positions_and_decodes_back(tiny_model, small_tasks):
    enc = Encoder(tiny_model.tokenizer, DataConfig(slot_len=24, max_prompt=48))
    rows = [e for e in (enc.encode(t) for t in small_tasks[:8]) if e is not None]
    batch = collate(rows, tiny_model.special, 0.05)
    s = tiny_model.special
    for b, row in enumerate(rows):
        slot = batch.input_ids[b, -24:]
        assert batch.input_ids[b, -25] == s.slot  # the [SLOT] marker right before
        assert enc.decode(slot.tolist()) == next(t.target for t in small_tasks if t.id == row.task_id)
        assert (batch.weights[b, -24:][: row.length] == 1).all() and (batch.weights[b, -24:][row.length:] == 0.05).all()
        assert (batch.weights[b, :-24] == 0).all()
        assert len(row.prompt) <= 48
