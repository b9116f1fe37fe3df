"""Corruption: a pure, seeded function whose statistics match its definition."""

from __future__ import annotations

import torch

from pretrain.corruption import KIND_CONTEXT, KIND_IDENTITY, KIND_MASKED, KIND_WRONG, corrupt, sample_t
from pretrain.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, mask=1, wrong=2, eos=3, focal=4, prefix=5, slot=6)
V = 50


def _batch(B=4000, T=12, slot=8):
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(7, V, (B, T), generator=g)
    slot_mask = torch.zeros(B, T, dtype=torch.bool)
    slot_mask[:, T - slot:] = True
    return clean, slot_mask


def test_same_seed_same_corruption_other_seed_other():
    clean, slot = _batch(64)
    a = corrupt(clean, slot, SPECIAL, V, generator=torch.Generator().manual_seed(3), wrong_prob=0.2)
    b = corrupt(clean, slot, SPECIAL, V, generator=torch.Generator().manual_seed(3), wrong_prob=0.2)
    c = corrupt(clean, slot, SPECIAL, V, generator=torch.Generator().manual_seed(4), wrong_prob=0.2)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.t, b.t)
    assert not torch.equal(a.input_ids, c.input_ids)
    assert torch.equal(clean, _batch(64)[0])  # the input is not modified


def test_mask_rate_follows_t_and_context_is_never_touched():
    clean, slot = _batch()
    t = torch.full((clean.shape[0],), 0.3)
    out = corrupt(clean, slot, SPECIAL, V, generator=torch.Generator().manual_seed(0), t=t)
    masked = (out.kind == KIND_MASKED).float()
    assert abs(masked[slot].mean().item() - 0.3) < 0.01
    assert torch.equal(out.input_ids[~slot], clean[~slot])
    assert (out.kind[~slot] == KIND_CONTEXT).all()
    assert (out.input_ids[out.kind == KIND_MASKED] == SPECIAL.mask).all()
    assert torch.equal(out.targets, clean)  # no wrong tokens asked for


def test_t_is_uniform_on_eps_1_and_antithetic_is_evenly_spread():
    g = torch.Generator().manual_seed(0)
    t = sample_t(20000, generator=g, eps=0.1)
    assert t.min() >= 0.1 and t.max() < 1.0
    assert abs(t.mean().item() - 0.55) < 0.01
    ta = sample_t(8, generator=g, eps=0.0, antithetic=True).sort().values
    gaps = ta[1:] - ta[:-1]
    assert torch.allclose(gaps, torch.full_like(gaps, 1 / 8), atol=1e-6)


def test_wrong_tokens_only_on_unmasked_slot_positions_with_target_wrong():
    clean, slot = _batch()
    t = torch.full((clean.shape[0],), 0.5)
    out = corrupt(clean, slot, SPECIAL, V, generator=torch.Generator().manual_seed(1), t=t, wrong_prob=0.2)
    wrong = out.kind == KIND_WRONG
    # P(wrong) = P(unmasked) * wrong_prob * P(replacement differs) ≈ 0.5 * 0.2 * (1 - 1/43)
    assert abs(wrong[slot].float().mean().item() - 0.1 * (1 - 1 / 43)) < 0.005
    assert (out.targets[wrong] == SPECIAL.wrong).all()
    assert (out.input_ids[wrong] != clean[wrong]).all()
    assert not torch.isin(out.input_ids[wrong], torch.tensor(SPECIAL.all())).any()  # random wrong tokens are ordinary
    ident = out.kind == KIND_IDENTITY
    assert torch.equal(out.input_ids[ident], clean[ident])


def test_model_proposals_supply_the_wrong_tokens():
    clean, slot = _batch(200)
    proposals = torch.full_like(clean, 9)
    out = corrupt(clean, slot, SPECIAL, V, generator=torch.Generator().manual_seed(1), wrong_prob=1.0, proposals=proposals)
    wrong = out.kind == KIND_WRONG
    assert wrong.any() and (out.input_ids[wrong] == 9).all()
    # where the proposal equals the clean token there is nothing wrong: identity stays
    assert not (wrong & (clean == 9)).any()


def test_suffix_rows_mask_a_tail_of_round_t_times_L():
    clean, slot = _batch(100)
    t = torch.full((100,), 0.25)
    out = corrupt(clean, slot, SPECIAL, V, generator=torch.Generator().manual_seed(2), t=t, suffix_rows=1.0)
    masked = out.kind == KIND_MASKED
    expect = torch.zeros_like(masked)
    expect[:, -2:] = True  # round(0.25 * 8) = 2 last slot positions
    assert torch.equal(masked, expect)


def test_suffix_rows_cut_inside_the_content_and_mask_every_pad_after_it():
    clean, slot = _batch(3)
    content = torch.zeros_like(slot)
    content[:, 4:8] = True  # slot positions 0..3 hold the assertion and [EOS]; 4..7 are [PAD]
    t = torch.tensor([0.25, 0.5, 1.0])
    out = corrupt(clean, slot, SPECIAL, V, generator=torch.Generator().manual_seed(2), t=t, suffix_rows=1.0,
                  content=content)
    masked = (out.kind == KIND_MASKED)[:, 4:]
    # round(t * 4) content positions from the end of the content, then all four [PAD]s
    assert masked.tolist() == [[False, False, False, True] + [True] * 4,
                               [False, False, True, True] + [True] * 4,
                               [True] * 8]
