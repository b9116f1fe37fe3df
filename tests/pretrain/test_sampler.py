"""diffusion_generate / recompute_logprobs / edit_start: the sampler's rules, on a tiny real
DiffusionLM and on hand-written toy models whose logits make the expected order unambiguous."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pretrain.sampler import SamplerConfig, Trajectory, diffusion_generate, edit_start, recompute_logprobs
from toy_models import SPECIAL, RandomToy, ToyModel, masked_inputs, static, toy_inputs  # tests/pretrain/, on sys.path under pytest

M, E, P = SPECIAL.mask, SPECIAL.eos, SPECIAL.pad
SLOT_LEN = 12


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def real_model():
    """A random-init 1-layer DiffusionLM on a BPE trained from a networkx source file. [EOS] is
    made likely (so slots end at varied places) and a [MASK] bias makes some positions not ready."""
    import networkx

    from pretrain.model import BackboneConfig, DiffusionLM
    from pretrain.tokenizer import train_tokenizer

    source = (Path(networkx.__file__).parent / "classes" / "graph.py").read_text().splitlines()[:400]
    tok = train_tokenizer(source, vocab_size=320)
    model = DiffusionLM.build(BackboneConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64, max_position_embeddings=128),
                              tok, slot_len=SLOT_LEN, max_prompt=20, seed=0).eval()
    with torch.no_grad():
        model.lm_head.bias[model.special.eos] = 3.0
    model.mask_logit_bias = 1.5
    return model


@pytest.fixture(scope="module")
def real_inputs(real_model):
    """Four rows, left-padded prompts of different lengths, slot all [MASK]."""
    tok, s = real_model.tokenizer, real_model.special
    pairs = [("def add_node(self, n):", "G = nx.Graph()"), ("return self._adj", "G.add_edge(1, 2)"),
             ("", "H = G.copy()\nH.add_nodes_from([3, 4])"), ("class Graph:", "")]
    prompts = [[s.focal, *tok(f, add_special_tokens=False)["input_ids"][:6], s.prefix,
                *tok(p, add_special_tokens=False)["input_ids"][:8], s.slot] for f, p in pairs]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width + SLOT_LEN), s.pad)
    attn = torch.zeros_like(ids)
    for b, prompt in enumerate(prompts):
        ids[b, width - len(prompt):width] = torch.tensor(prompt)
        ids[b, width:] = s.mask
        attn[b, width - len(prompt):] = 1
    return ids, attn


def assert_well_formed(tokens: torch.Tensor, special, protected: torch.Tensor | None = None) -> None:
    """No [MASK] or other never-generated token; after the first [EOS] only [PAD]; [PAD] only there."""
    for b, row in enumerate(tokens.tolist()):
        for i, t in enumerate(row):
            if protected is not None and protected[b, i]:
                continue
            assert t not in special.never_generated(), (b, row)
        end = row.index(special.eos) if special.eos in row else len(row)
        assert all(t == special.pad for t in row[end + 1:]), row
        assert all(t != special.pad or (protected is not None and protected[b, i]) for i, t in enumerate(row[:end])), row


def commit_step(traj: Trajectory, row: int = 0) -> dict[int, int]:
    """Slot position -> step at which it was (last) committed."""
    steps = {}
    for k in range(traj.committed.shape[0]):
        for i in traj.committed[k, row].nonzero().flatten().tolist():
            steps[i] = k
    return steps


# ---------------------------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs, words", [
    ({"steps": 0}, "sampler.steps=0"),
    ({"block_size": 0}, "sampler.block_size=0"),
    ({"schedule": "cubic"}, "linear, cosine"),
    ({"unmask": "low"}, "confidence, margin, entropy, random"),
    ({"remask": "all"}, "none, confidence, critic"),
    ({"remask_budget": 1.5, "remask": "critic"}, "[0, 1]"),
    ({"remask_budget": 0.2}, "set remask to confidence or critic"),
    ({"temperature": -1.0}, "0 = greedy"),
    ({"top_p": 0.0}, "(0, 1]"),
    ({"edit_threshold": 2.0}, "sigma(critic)"),
])
def test_config_rejects_bad_values_and_says_how_to_fix(kwargs, words):
    with pytest.raises(ValueError) as err:
        SamplerConfig(**kwargs)
    assert words in str(err.value)


# ---------------------------------------------------------------------------------- real model


@pytest.mark.parametrize("cfg", [
    SamplerConfig(steps=8, block_size=4, temperature=1.0, top_p=0.9, remask="confidence", remask_budget=0.5, seed=3),
    SamplerConfig(steps=6, block_size=12, temperature=0.0, unmask="margin", remask="critic", remask_budget=0.4,
                  remask_randomness=0.5),
    SamplerConfig(steps=5, block_size=3, temperature=0.7, unmask="entropy", schedule="cosine"),
    SamplerConfig(steps=12, block_size=1, temperature=1.0, eos_when_parses=True, seed=1),
    SamplerConfig(steps=12, block_size=1, temperature=1.0, eos_when_parses=True, syntax_guard=True, seed=2),
], ids=["sampled-top_p-remask", "greedy-critic", "entropy-cosine", "left-to-right-parse-gate", "syntax-guard"])
def test_recorded_logprobs_match_recompute_and_carry_gradients(real_model, real_inputs, cfg):
    ids, attn = real_inputs
    traj = diffusion_generate(real_model, ids, attn, cfg).trajectory
    assert traj.states.shape == (cfg.steps, 4, SLOT_LEN) and traj.logprobs.shape == (cfg.steps, 4)
    assert traj.committed.any() and (traj.logprobs <= 0).all() and torch.isfinite(traj.logprobs).all()
    assert (traj.temperature, traj.top_p, traj.mask_logit_bias, traj.seed) == (cfg.temperature, cfg.top_p, 1.5, cfg.seed)
    # Actions are taken on [MASK] positions only; remasked positions are [MASK] in the next state.
    assert (traj.states[traj.committed] == real_model.special.mask).all()
    assert (traj.states[1:][traj.remasked[:-1]] == real_model.special.mask).all()

    real_model.zero_grad()
    again = recompute_logprobs(real_model, ids, attn, traj)  # (K, B)
    assert again.shape == traj.logprobs.shape
    assert torch.allclose(again.detach(), traj.logprobs, atol=1e-5, rtol=0)
    again.sum().backward()
    assert real_model.lm_head.weight.grad is not None and real_model.lm_head.weight.grad.abs().sum() > 0
    # Step subsampling gives the same numbers for the chosen steps.
    picked = recompute_logprobs(real_model, ids, attn, traj, steps=[cfg.steps - 1, 0])
    assert torch.allclose(picked.detach(), traj.logprobs[[cfg.steps - 1, 0]], atol=1e-5, rtol=0)


def test_greedy_records_the_temperature_one_log_prob_of_the_argmax():
    model = ToyModel(2, static([{9: 0.6}, {10: 0.8}]))
    ids, attn = masked_inputs(1, 2)
    traj = diffusion_generate(model, ids, attn, SamplerConfig(steps=2, block_size=2, temperature=0.0)).trajectory
    assert commit_step(traj) == {1: 0, 0: 1}
    assert torch.allclose(traj.logprobs[:, 0], torch.log(torch.tensor([0.8, 0.6])), atol=1e-5)


def test_same_seed_same_output_and_a_different_seed_differs(real_model, real_inputs):
    ids, attn = real_inputs
    cfg = SamplerConfig(steps=6, block_size=4, remask="confidence", remask_budget=0.3, remask_randomness=0.3, seed=7)
    a, b = diffusion_generate(real_model, ids, attn, cfg), diffusion_generate(real_model, ids, attn, cfg)
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.trajectory.states, b.trajectory.states) and torch.equal(a.trajectory.logprobs, b.trajectory.logprobs)
    assert a.trajectory.seed == 7
    others = [diffusion_generate(real_model, ids, attn, SamplerConfig(steps=6, block_size=4, seed=s), record=False).tokens
              for s in (8, 9)]
    assert any(not torch.equal(a.tokens, o) for o in others)
    unrecorded = diffusion_generate(real_model, ids, attn, cfg, record=False)
    assert unrecorded.trajectory is None and torch.equal(unrecorded.tokens, a.tokens)


@pytest.mark.parametrize("remask", ["none", "confidence", "critic"])
def test_protected_positions_never_change(real_model, real_inputs, remask):
    ids, attn = real_inputs
    s = real_model.special
    ids = ids.clone()
    given = torch.tensor([40, 41, 42, 43])
    protected = torch.zeros(4, SLOT_LEN, dtype=torch.bool)
    protected[:, [1, 5]] = True
    ids[:, -SLOT_LEN + 1] = given
    ids[:, -SLOT_LEN + 5] = given + 10
    budget = 0.0 if remask == "none" else 1.0
    cfg = SamplerConfig(steps=8, block_size=4, remask=remask, remask_budget=budget, seed=1)
    out = diffusion_generate(real_model, ids, attn, cfg, protected=protected)
    assert torch.equal(out.tokens[:, 1], given) and torch.equal(out.tokens[:, 5], given + 10)
    traj = out.trajectory
    assert (traj.states[:, :, 1] == given).all() and (traj.states[:, :, 5] == given + 10).all()
    assert not (traj.committed | traj.remasked)[:, protected].any()
    if remask != "none":
        assert traj.remasked.any()  # the budget was used, elsewhere
    # An [EOS] never cuts off a protected token.
    for row in out.tokens.tolist():
        assert s.eos not in row[:5]
    assert_well_formed(out.tokens, s, protected)


@pytest.mark.parametrize("steps, block_size", [(16, 4), (3, 4), (2, 4), (1, 4), (5, 12), (7, 5), (12, 1), (30, 3)])
@pytest.mark.parametrize("remask", ["none", "critic"])
def test_every_run_ends_fully_committed_and_well_formed(real_model, real_inputs, steps, block_size, remask):
    ids, attn = real_inputs
    budget = 0.0 if remask == "none" else 0.6
    cfg = SamplerConfig(steps=steps, block_size=block_size, remask=remask, remask_budget=budget, seed=steps)
    out = diffusion_generate(real_model, ids, attn, cfg)
    assert_well_formed(out.tokens, real_model.special)
    traj = out.trajectory
    mask = real_model.special.mask
    # Rows that are done stop changing; a row whose state has no [MASK] takes no action.
    done = ~(traj.states == mask).any(-1)  # (K, B)
    assert not traj.active[done].any() and (traj.logprobs[done] == 0).all()
    for k in range(steps - 1):
        assert torch.equal(traj.states[k + 1][done[k]], traj.states[k][done[k]])
    assert torch.equal(traj.states[-1][done[-1]], out.tokens[done[-1]])


@pytest.mark.parametrize("slot_len, steps, block_size", [(5, 2, 2), (5, 5, 1), (9, 4, 4), (9, 2, 3), (9, 20, 4)])
def test_toy_runs_end_committed_for_other_slot_lengths(slot_len, steps, block_size):
    model = RandomToy(slot_len, seed=slot_len)
    ids, attn = masked_inputs(6, slot_len)
    cfg = SamplerConfig(steps=steps, block_size=block_size, remask="confidence", remask_budget=0.5, seed=2)
    out = diffusion_generate(model, ids, attn, cfg)
    assert out.tokens.shape == (6, slot_len)
    assert_well_formed(out.tokens, SPECIAL)
    assert (out.tokens == E).any()  # [EOS] was committed somewhere, so the [PAD] rule was exercised
    with torch.no_grad():
        assert torch.allclose(recompute_logprobs(model, ids, attn, out.trajectory), out.trajectory.logprobs, atol=1e-5)


def test_edit_start_remasks_exactly_the_doubted_positions(real_model, real_inputs):
    ids, attn = real_inputs
    s = real_model.special
    filled = diffusion_generate(real_model, ids, attn, SamplerConfig(steps=4, seed=5), record=False).tokens
    retrieved = ids.clone()
    retrieved[:, -SLOT_LEN:] = filled
    with torch.no_grad():
        p = torch.sigmoid(real_model(retrieved, attn).critic[:, -SLOT_LEN:])
    threshold = float(p.median())
    protected = torch.zeros_like(filled, dtype=torch.bool)
    protected[:, 0] = True
    start = edit_start(real_model, retrieved, attn, SamplerConfig(edit_threshold=threshold), protected=protected)
    assert torch.equal(start[:, :-SLOT_LEN], ids[:, :-SLOT_LEN])
    doubted = start[:, -SLOT_LEN:] == s.mask
    assert torch.equal(doubted, (p < threshold) & ~protected) and doubted.any()
    assert torch.equal(start[:, -SLOT_LEN:][~doubted], filled[~doubted])


# ---------------------------------------------------------------------------------- toy models: ordering


def test_a_position_predicting_mask_is_committed_after_the_ready_ones():
    # Position 2's best real token is the most confident of all once [MASK] is removed, but its
    # argmax is [MASK]: not ready, so it comes last. With a negative [MASK] bias it is ready, and first.
    table = [{9: 0.6}, {10: 0.7}, {M: 0.5, 11: 0.45}, {12: 0.5}]
    ids, attn = masked_inputs(1, 4)
    cfg = SamplerConfig(steps=4, block_size=4, temperature=0.0)
    late = diffusion_generate(ToyModel(4, static(table)), ids, attn, cfg)
    assert commit_step(late.trajectory) == {1: 0, 0: 1, 3: 2, 2: 3}
    assert late.tokens[0].tolist() == [9, 10, 11, 12]
    early = diffusion_generate(ToyModel(4, static(table), mask_logit_bias=-2.0), ids, attn, cfg)
    assert commit_step(early.trajectory)[2] == 0


def test_not_ready_positions_are_committed_when_the_step_needs_them():
    ids, attn = masked_inputs(1, 2)
    out = diffusion_generate(ToyModel(2, static([{M: 0.6, 9: 0.3}, {M: 0.7, 10: 0.2}])), ids, attn,
                             SamplerConfig(steps=2, block_size=2, temperature=0.0))
    assert out.trajectory.committed[0, 0].sum() == 1 and out.tokens[0].tolist() == [9, 10]


def trailing_end_model(slot_len: int) -> ToyModel:
    """Content at positions 0..3 with moderate confidence; trailing positions extremely sure of
    [PAD] (then [EOS]); and, like a real model, [EOS] right before a visible [EOS]/[PAD]."""
    head = [{7 + i: 0.5, E: 0.1, P: 0.05} for i in range(4)]
    tail = [{P: 0.9, E: 0.099}] * (slot_len - 4)
    base = static(head + tail)
    end_here = torch.full((24,), -5.0)
    end_here[E] = 5.0

    def logits(slot: torch.Tensor) -> torch.Tensor:
        out = base(slot).clone()  # (B, L, V)
        ends = torch.zeros_like(slot, dtype=torch.bool)
        ends[:, :-1] = (slot[:, 1:] == E) | (slot[:, 1:] == P)
        out[ends] = end_here
        return out

    return ToyModel(slot_len, logits)


def test_confident_trailing_eos_and_pad_do_not_empty_the_slot_with_blocks():
    ids, attn = masked_inputs(2, SLOT_LEN)
    out = diffusion_generate(trailing_end_model(SLOT_LEN), ids, attn, SamplerConfig(steps=12, block_size=4, temperature=0.0))
    traj = out.trajectory
    # The first block is filled first, although the trailing positions are far more confident.
    when = commit_step(traj, 0)
    assert sorted(when) == [0, 1, 2, 3, 4]
    assert max(when[i] for i in range(4)) < when[4]
    assert traj.committed[:4, :, 4:].sum() == 0
    for row in out.tokens.tolist():
        assert row[:4] == [7, 8, 9, 10] and row[4] == E and row[5:] == [P] * (SLOT_LEN - 5)
    # [PAD] is never an action: the positions after [EOS] were filled without being committed.
    assert traj.committed[:, :, 5:].sum() == 0
    # Whole-slot ordering would have started at the confident tail instead.
    whole = diffusion_generate(trailing_end_model(SLOT_LEN), ids, attn, SamplerConfig(steps=12, block_size=SLOT_LEN, temperature=0.0))
    assert whole.trajectory.committed[0, 0, :4].sum() == 0 and whole.trajectory.committed[0, 0, 4:].sum() >= 1


def test_an_eos_pads_what_follows_while_earlier_masks_keep_filling():
    table = [{9: 0.6}, {10: 0.6}, {11: 0.6}, {E: 0.95}, {P: 0.9, E: 0.05}, {P: 0.9, E: 0.05}]
    ids, attn = masked_inputs(1, 6)
    traj = diffusion_generate(ToyModel(6, static(table)), ids, attn,
                              SamplerConfig(steps=4, block_size=6, temperature=0.0)).trajectory
    # Step 0 commits two: [EOS] at 3 (most confident) and position 0; 4 and 5 become [PAD] (not actions).
    assert traj.committed[0, 0].nonzero().flatten().tolist() == [0, 3]
    assert traj.states[1, 0].tolist() == [9, M, M, E, P, P]
    assert traj.committed[:, 0, 4:].sum() == 0
    assert traj.states[-1, 0].tolist() == [9, 10, 11, E, P, P]


def test_an_eos_never_cuts_off_committed_tokens():
    # Positions 4, 5 are committed first; then [EOS] at 3, though the model's favourite, is not allowed.
    table = [{9: 0.6}, {10: 0.6}, {11: 0.6}, {E: 0.95}, {12: 0.99}, {13: 0.99}]
    ids, attn = masked_inputs(1, 6)
    out = diffusion_generate(ToyModel(6, static(table)), ids, attn, SamplerConfig(steps=6, block_size=6, temperature=0.0))
    assert commit_step(out.trajectory)[4] == 0 and commit_step(out.trajectory)[5] == 1
    final = out.tokens[0].tolist()
    assert final[:3] == [9, 10, 11] and final[4:] == [12, 13] and E not in final


def test_top_p_never_samples_outside_the_nucleus():
    model = ToyModel(3, static([{9: 0.6, 10: 0.3}] * 3))
    ids, attn = masked_inputs(8, 3)
    for seed in range(3):
        out = diffusion_generate(model, ids, attn, SamplerConfig(steps=3, block_size=3, top_p=0.5, seed=seed))
        assert (out.tokens == 9).all()
        assert torch.allclose(out.trajectory.logprobs, torch.zeros(3, 8), atol=1e-6)  # the nucleus is one token
    wide = diffusion_generate(model, ids, attn, SamplerConfig(steps=3, block_size=3, top_p=0.8, seed=0)).tokens
    assert set(wide.unique().tolist()) <= {9, 10} and (wide == 10).any()


# ---------------------------------------------------------------------------------- toy models: remasking


REMASK_TABLE = [{7: 0.9}, {8: 0.3, 14: 0.6}, {9: 0.9}, {10: 0.9}, {12: 0.8}, {E: 0.7}]
CRITIC = torch.tensor([3.0, 3.0, -3.0, 3.0, 3.0, 3.0])


@pytest.mark.parametrize("policy, expected", [("critic", 2), ("confidence", 1)])
def test_remask_picks_the_most_doubted_committed_position_and_still_ends_committed(policy, expected):
    model = ToyModel(6, static(REMASK_TABLE), critic_fn=lambda slot: CRITIC.expand(slot.shape[0], -1))
    ids, attn = toy_inputs([[7, 8, 9, 10, M, M]])
    cfg = SamplerConfig(steps=4, block_size=6, temperature=0.0, remask=policy, remask_budget=0.25)
    out = diffusion_generate(model, ids, attn, cfg)
    traj = out.trajectory
    # Step 0 commits position 4; 5 positions are committed, floor(0.25 * 5) = 1 is remasked: the
    # one with the lowest critic (critic) or lowest model probability of its token (confidence).
    assert traj.committed[0, 0].nonzero().flatten().tolist() == [4]
    assert traj.remasked[0, 0].nonzero().flatten().tolist() == [expected]
    assert traj.states[1, 0, expected] == M
    assert expected in commit_step(traj)  # and filled again (made up for in the later steps)
    assert (out.tokens != M).all()
    assert_well_formed(out.tokens, SPECIAL)


def test_a_zero_budget_never_remasks():
    model = ToyModel(6, static(REMASK_TABLE), critic_fn=lambda slot: CRITIC.expand(slot.shape[0], -1))
    ids, attn = toy_inputs([[7, 8, 9, 10, M, M]])
    for policy in ("critic", "confidence"):
        traj = diffusion_generate(model, ids, attn, SamplerConfig(steps=4, block_size=6, remask=policy)).trajectory
        assert not traj.remasked.any()
        assert traj.states[-1, 0, :4].tolist() == [7, 8, 9, 10]


def test_remasking_stays_within_the_current_block():
    model = RandomToy(9, seed=4, eos_boost=0.0)
    ids, attn = masked_inputs(4, 9)
    traj = diffusion_generate(model, ids, attn, SamplerConfig(steps=9, block_size=3, remask="critic",
                                                              remask_budget=1.0, seed=1)).trajectory
    assert traj.remasked.any()
    for b in range(4):
        frontier = -1  # the furthest block committed into so far = the current block
        for k in range(9):
            committed = traj.committed[k, b].nonzero().flatten()
            if len(committed):
                frontier = max(frontier, int(committed.max()) // 3)
            assert (traj.remasked[k, b].nonzero().flatten() // 3 <= frontier).all()


# ---------------------------------------------------------------------------------- toy models: editing


@pytest.mark.parametrize("start, critic, table, final", [
    # The critic doubts the [EOS]: its [PAD]s reopen and the assertion grows.
    ([7, 8, E, P, P, P], [3, 3, -3, 3, 3, 3], [{7: 0.9}, {8: 0.9}, {9: 0.9}, {10: 0.9}, {E: 0.9}, {P: 0.9, E: 0.05}],
     [7, 8, 9, 10, E, P]),
    # The critic doubts the end of the assertion and its [EOS]: the model ends it earlier.
    ([7, 8, 9, 10, E, P], [3, 3, -3, -3, -3, 3], [{7: 0.9}, {8: 0.9}, {E: 0.9}, {P: 0.9}, {P: 0.9}, {P: 0.9}],
     [7, 8, E, P, P, P]),
], ids=["longer", "shorter"])
def test_editing_can_change_the_length(start, critic, table, final):
    critic = torch.tensor(critic, dtype=torch.float32)
    model = ToyModel(6, static(table), critic_fn=lambda slot: critic.expand(slot.shape[0], -1))
    ids, attn = toy_inputs([start])
    edited = edit_start(model, ids, attn, SamplerConfig())
    doubted = (critic < 0).tolist()
    assert edited[0, -6:].tolist() == [M if d else t for t, d in zip(start, doubted)]
    out = diffusion_generate(model, edited, attn, SamplerConfig(steps=4, block_size=6, temperature=0.0))
    assert out.tokens[0].tolist() == final
    # Kept tokens were never actions.
    kept = torch.tensor([not d and t not in (P,) for t, d in zip(start, doubted)])
    assert not out.trajectory.committed[:, 0, kept].any()


def test_edit_start_never_remasks_protected_positions():
    critic = torch.full((6,), -3.0)
    model = ToyModel(6, static(REMASK_TABLE), critic_fn=lambda slot: critic.expand(slot.shape[0], -1))
    ids, attn = toy_inputs([[7, 8, 9, 10, E, P]])
    protected = torch.tensor([[True, False, False, True, False, False]])
    edited = edit_start(model, ids, attn, SamplerConfig(), protected=protected)
    assert edited[0, -6:].tolist() == [7, M, M, 10, M, M]


def test_parse_gate_allows_eos_only_after_a_committed_assertion_that_parses(real_model):
    from pretrain.sampler import parse_gate

    tok, s = real_model.tokenizer, real_model.special
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    M = s.mask
    rows = [ids("assert len(G) == 2") + [M, M], ids("assert len(G) ==") + [M, M], [M] * 4,
            ids("assert x") + [M] + ids(" == 1")]
    width = max(len(r) for r in rows)
    state = torch.tensor([r + [M] * (width - len(r)) for r in rows])
    gate = parse_gate(state, s, tok.decode)
    first = [len(ids("assert len(G) == 2")), len(ids("assert len(G) =="))]
    assert gate[0].nonzero().flatten().tolist() == [first[0]]  # right after the parsing assertion
    assert not gate[1].any()  # 'assert len(G) ==' does not parse: no end yet
    assert not gate[2].any()  # nothing committed: an empty slot is no assertion
    assert gate[3].nonzero().flatten().tolist() == [len(ids("assert x"))]  # first [MASK] only



@pytest.mark.parametrize("text, state", [
    ("assert f(x) == [1, 2", ("]",)),
    ('assert "a(" == b[', ("]",)),
    ('assert f(x, "a\\"b")', ()),
    ("assert {1: (2", ("}", ")")),  # innermost last
])
def test_syntax_scan_tracks_brackets_outside_strings(text, state):
    from pretrain.sampler import _scan

    assert _scan(((), "", False), text) == (state, "", False)


@pytest.mark.parametrize("text", ["assert f(x))", "assert [1, 2)", "assert x  # why", "assert 'a\nb' == c"])
def test_syntax_scan_refuses_what_can_never_close(text):
    from pretrain.sampler import _scan

    assert _scan(((), "", False), text) is None


def test_syntax_gate_bans_wrong_closers_and_what_cannot_close_in_time(real_model):
    from pretrain.sampler import syntax_gate

    tok, s = real_model.tokenizer, real_model.special
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    vocab = {tok.decode([v]): v for v in range(len(tok))}
    close_paren, close_bracket = vocab[")"], vocab["]"]
    open_paren = vocab["("]
    head = ids("assert len(G")
    banned = syntax_gate(torch.tensor([head + [s.mask] * 3, [s.mask] * (len(head) + 3)]), s, tok)
    j = len(head)
    assert not banned[0, j, close_paren] and banned[0, j, close_bracket]  # only the open '(' may close
    assert not banned[0, j + 1].any()  # guarded: the next position to fill only
    assert banned[1, 0, close_paren] and not banned[1, 0, open_paren]  # an empty slot starts guarded too
    assert not banned[1, 1:].any()
    last = syntax_gate(torch.tensor([head + [s.mask]]), s, tok)  # the slot's last position: close now
    assert last[0, j, open_paren] and not last[0, j, close_paren]


def test_syntax_guard_never_emits_a_wrong_closer(real_model, real_inputs):
    from pretrain.sampler import _scan

    ids, attn = real_inputs
    for seed in range(4):
        cfg = SamplerConfig(steps=SLOT_LEN, block_size=1, temperature=1.0, syntax_guard=True, seed=seed)
        tokens = diffusion_generate(real_model, ids, attn, cfg, record=False).tokens
        for row in tokens.tolist():
            content = [t for t in row if t not in (real_model.special.pad, real_model.special.eos)]
            assert _scan(((), "", False), real_model.tokenizer.decode(content)) is not None


def test_slot_log_likelihood_sums_the_slot_tokens_and_eos_only(real_model, real_inputs):
    from pretrain.sampler import slot_log_likelihood

    ids, attn = real_inputs
    s = real_model.special
    slot = ids[:, -SLOT_LEN:].clone()
    words = real_model.tokenizer("assert len(G) == 2", add_special_tokens=False)["input_ids"][:4]
    slot[:, :4] = torch.tensor(words)
    slot[:, 4] = s.eos
    slot[:, 5:] = s.pad
    full = torch.cat([ids[:, :-SLOT_LEN], slot], dim=1)
    got = slot_log_likelihood(real_model, full, attn)
    with torch.no_grad():
        logp = torch.log_softmax(real_model(full, attn, last=SLOT_LEN).logits[:, -SLOT_LEN:].float(), -1)
    want = logp.gather(-1, slot[..., None]).squeeze(-1)[:, :5].sum(-1)
    assert torch.allclose(got, want, atol=1e-6)


def test_sample_tokens_draws_from_the_softmax_and_never_a_forbidden_id():
    from pretrain.sampler import sample_tokens

    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, 3.0]).expand(40_000, 1, 6).contiguous()
    forbidden = torch.tensor([3, 5])
    drawn = sample_tokens(logits, forbidden, torch.Generator().manual_seed(0))
    assert drawn.shape == (40_000, 1)
    freq = torch.bincount(drawn.flatten(), minlength=6).float() / 40_000
    want = torch.softmax(logits[0, 0].masked_fill(torch.isin(torch.arange(6), forbidden), float("-inf")), -1)
    assert freq[3] == 0 and freq[5] == 0
    assert torch.allclose(freq, want, atol=0.01)
    # a row with one allowed id always draws it
    one = torch.full((1, 2, 6), -30.0)
    one[..., 2] = 0.0
    assert (sample_tokens(one, torch.tensor([0, 1, 3, 4, 5]), torch.Generator().manual_seed(1)) == 2).all()
