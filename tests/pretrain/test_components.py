"""The Trident loss components: registry and errors, a gradient from every component on the
student, schedules in a real run, teacher→student training and its checks, sequence-level KD."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from pretrain.components import Components, LossConfig, MinimumRisk, SequenceBatch, build_component
from pretrain.corruption import KIND_IDENTITY, KIND_MASKED
from pretrain.data import DataConfig, Encoder
from pretrain.errors import TrainError
from pretrain.losses import DiffusionLoss, LossConfigError
from pretrain.model import BackboneConfig, DiffusionLM
from pretrain.sft import OptimConfig, SequenceKDConfig, SFTConfig, train

TINY = dict(vocab_size=600, batch_size=8, final_eval=False, log_every=1, eval_every=0, eval_tasks=8, progress=False,
            precision="fp32", data=DataConfig(slot_len=24, max_prompt=48),
            model=BackboneConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 max_position_embeddings=128))
STUDENT = BackboneConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=128)


# ------------------------------------------------------------------ registry and config errors


def test_unknown_component_lists_the_valid_ones():
    with pytest.raises(LossConfigError) as err:
        Components.from_config(["ce", "focall"])
    for name in ("ce", "focal", "kl", "jsd", "semantic", "ast", "pans", "layer"):
        assert name in str(err.value)
    assert "did you mean 'focal'" in str(err.value)


@pytest.mark.parametrize("entries, words", [
    ([{"name": "focal", "gama": 2}], ["focal", "gama", "gamma"]),
    ([{"name": "focal", "weight": {"start": 1, "ending": 0}}], ["focal", "start, end"]),
    ([{"name": "focal", "weight": {"start": 1, "end": 0, "shape": "sine"}}], ["sine", "linear"]),
    ([{"name": "jsd", "beta": 2.0}], ["jsd", "beta"]),
    (["semantic"], ["token component", "ce"]),
    (["ce", "ce"], ["'ce'", "twice"]),
    ([{"name": "layer", "map": [[1]]}], ["map", "student_layer"]),
    ("ce", ["list"]),
])
def test_each_config_mistake_is_one_clear_error(entries, words):
    with pytest.raises(LossConfigError) as err:
        Components.from_config(entries)
    for w in words:
        assert w in str(err.value)


def test_teacher_components_without_a_teacher_say_so():
    with pytest.raises(LossConfigError, match="loss.teacher"):
        LossConfig(components=["ce", "kl"])
    LossConfig(components=["ce", "kl"], teacher="somewhere")  # checked for existence when training starts


def test_the_old_configs_mean_plain_cross_entropy():
    assert Components.from_config(LossConfig().components).is_plain_ce
    assert Components.from_config([{"name": "ce", "weight": 1}]).is_plain_ce


# ------------------------------------------------------------------ a gradient from every component


def _state_inputs(B=3, T=5, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, T, V, generator=g, requires_grad=True)
    teacher = torch.randn(B, T, V, generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    kind = torch.full((B, T), KIND_MASKED)
    return student, teacher, targets, kind


@pytest.mark.parametrize("name, params", [("ce", {}), ("focal", {"gamma": 2.0}), ("kl", {"temperature": 2.0}),
                                          ("jsd", {"beta": 0.5, "temperature": 2.0})])
def test_token_components_give_a_gradient_and_log_raw_value_and_weight(tiny_model, name, params):
    student, teacher, targets, kind = _state_inputs(V=len(tiny_model.tokenizer))
    comps = Components([build_component(name, {"start": 0.5, "end": 0.25}, **params)])
    comps.progress = 1.0
    loss = DiffusionLoss([], token_loss=comps.token_loss)
    total, metrics = loss(student, targets, targets, kind, torch.ones(kind.shape), torch.full((3,), 0.5),
                          tiny_model.special, teacher_logits=teacher)
    total.backward()
    assert student.grad.abs().sum() > 0
    # the raw value is logged before its weight: total = 0.25 · raw
    assert metrics[f"loss/{name}"] == pytest.approx(metrics["loss/total"] / 0.25, rel=1e-5)
    assert comps.weights() == {f"weight/{name}": 0.25}


def _slot_logits(encoder, texts, V, L):
    """Logits (B, L, V) that favour each text's slot tokens, and that draw (B, L) of them: the
    sample is given, so the test does not hang on chance, and p stays below 1 so the
    log-probabilities still have a gradient."""
    logits = torch.zeros(len(texts), L, V)
    drawn = torch.tensor([encoder.slot(text)[0] for text in texts])
    logits.scatter_(-1, drawn.unsqueeze(-1), 8.0)
    return logits.requires_grad_(True), drawn


@pytest.mark.parametrize("name", ["semantic", "ast", "pans"])
def test_sequence_components_give_a_gradient_on_the_student_logits(small_tasks, tiny_model, name):
    """Two rows sample the task's own (passing) target, two a broken one: the rewards differ, so
    the score-function gradient with its leave-one-out baseline is non-zero, and pushes the
    log-probability of the good rows up (a descent step lowers the risk)."""
    encoder = Encoder(tiny_model.tokenizer, DataConfig(slot_len=24, max_prompt=48))
    task = next(t for t in small_tasks if encoder.slot(t.target) is not None and t.split == "train")
    texts = [task.target, task.target, "assert (", "assert ) =="]
    L, V = 24, len(tiny_model.tokenizer)
    logits, drawn = _slot_logits(encoder, texts, V, L)
    special = tiny_model.special
    batch = SequenceBatch(logits, torch.full((4, L), special.mask), torch.full((4, L), KIND_MASKED), [task] * 4,
                          [task.target] * 4, [None] * 4, encoder.decode,
                          torch.tensor(sorted(set(special.never_generated()))), torch.Generator().manual_seed(0),
                          drawn=drawn)
    comp = build_component(name)
    surrogate, risk = comp.sequence(batch)
    surrogate.backward()
    assert logits.grad.abs().sum() > 0
    assert 0.0 <= risk < 1.0
    good = torch.tensor(encoder.slot(task.target)[0])
    # gradient descent raises the sampled tokens' logits on the rewarded rows
    assert (logits.grad[0, torch.arange(L), good] < 0).any()


def test_minimum_risk_with_equal_rewards_has_no_gradient(tiny_model):
    """The baseline takes out what every sample shares: the same reward everywhere, nothing to learn."""
    encoder = Encoder(tiny_model.tokenizer, DataConfig(slot_len=24, max_prompt=48))
    L, V = 24, len(tiny_model.tokenizer)
    logits, drawn = _slot_logits(encoder, ["assert x"] * 3, V, L)
    special = tiny_model.special
    batch = SequenceBatch(logits, torch.full((3, L), special.mask), torch.full((3, L), KIND_MASKED), [None] * 3,
                          ["assert y"] * 3, [None] * 3, encoder.decode, torch.tensor(special.never_generated()),
                          torch.Generator().manual_seed(0), drawn=drawn)
    surrogate, risk = build_component("ast").sequence(batch)
    surrogate.backward()
    assert risk == 0.0 and logits.grad.abs().sum() == 0


def test_risk_takes_any_reward_and_a_teacher_reference(tiny_model):
    encoder = Encoder(tiny_model.tokenizer, DataConfig(slot_len=24, max_prompt=48))
    L, V = 24, len(tiny_model.tokenizer)
    logits, drawn = _slot_logits(encoder, ["assert x == 1", "assert y"], V, L)
    special = tiny_model.special
    kind = torch.full((2, L), KIND_IDENTITY)  # the visible tokens are kept, the first two are sampled
    kind[:, :2] = KIND_MASKED
    visible = torch.tensor([encoder.slot(t)[0] for t in ("assert x == 1", "assert y")])
    batch = SequenceBatch(logits, visible, kind, [None] * 2, ["assert q", "assert q"],
                          ["assert x == 1", None], encoder.decode, torch.tensor(special.never_generated()),
                          torch.Generator().manual_seed(0), drawn=drawn)
    comp = build_component("risk", reward="exact_match", reference="teacher")
    assert isinstance(comp, MinimumRisk)
    surrogate, risk = comp.sequence(batch)
    # row 0 matches its teacher output exactly; row 1 has none, so gold ("assert q") counts: no match
    assert risk == pytest.approx(0.5)


def test_layer_distillation_gives_a_gradient_to_student_states_and_projection(tiny_tokenizer):
    student = DiffusionLM.build(STUDENT, tiny_tokenizer, slot_len=24, max_prompt=48)
    teacher = DiffusionLM.build(TINY["model"], tiny_tokenizer, slot_len=24, max_prompt=48)
    comp = build_component("layer")
    comp.setup(student, teacher)
    assert comp.pairs == [(1, 2)]  # one student layer, paired with the teacher's last
    ids = torch.randint(7, len(tiny_tokenizer), (2, 30))
    s = student(ids, last=24, layers=True)
    with torch.no_grad():
        t = teacher(ids, last=24, layers=True)
    raw = comp.hidden(s.layers, t.layers, torch.ones(2, 24, dtype=torch.bool))
    raw.backward()
    assert raw > 0 and comp.projections[0].weight.grad.abs().sum() > 0
    assert student.backbone.layers[0].mlp.Wo.weight.grad.abs().sum() > 0
    with pytest.raises(LossConfigError, match="layers the models lack|lack"):
        build_component("layer", map=[[1, 5]]).setup(student, teacher)


# ------------------------------------------------------------------ teacher → student training


@pytest.fixture(scope="module")
def teacher_dir(small_tasks_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    # long enough to end its slots with [EOS] now and then (sequence-level KD keeps only those)
    train(SFTConfig(tasks=small_tasks_file, out=out, max_steps=40, save_every=40,
                    optim=OptimConfig(lr=1e-2, warmup_steps=2), **TINY))
    return out / "final"


def _student(small_tasks_file, out, teacher_dir, components, **kw):
    cfg = {**TINY, "model": STUDENT, **kw}
    return SFTConfig(tasks=small_tasks_file, out=out, loss=LossConfig(components=components, teacher=teacher_dir), **cfg)


ALL = [{"name": "focal", "gamma": 2.0, "weight": {"start": 0.5, "end": 0.3}},
       {"name": "jsd", "temperature": 2.0, "weight": {"start": 0.3, "end": 0.4}},
       {"name": "kl", "weight": 0.1},
       {"name": "semantic", "rows": 4, "weight": {"start": 0.2, "end": 0.3, "shape": "cosine"}},
       {"name": "ast", "weight": {"start": 0.0, "end": 0.2, "shape": "step", "at": 0.5}},
       {"name": "pans", "rows": 2, "weight": 0.1},
       {"name": "layer", "weight": 0.5}]


def test_every_component_trains_a_student_and_logs_value_and_weight_each_step(small_tasks_file, teacher_dir, tmp_path):
    summary = train(_student(small_tasks_file, tmp_path / "s", teacher_dir, ALL, max_steps=3, save_every=3))
    assert summary["steps"] == 3
    rows = [json.loads(x) for x in open(tmp_path / "s" / "metrics.jsonl")]
    steps = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        for c in ALL:
            assert f"loss/{c['name']}" in r and f"weight/{c['name']}" in r, (c["name"], sorted(r))
        assert all(r[k] == r[k] for k in r if k.startswith(("loss/", "weight/")))  # no NaN
    # schedules meet both endpoints: the first step at start, the last at end
    assert (steps[0]["weight/focal"], steps[-1]["weight/focal"]) == pytest.approx((0.5, 0.3))
    assert (steps[0]["weight/semantic"], steps[-1]["weight/semantic"]) == pytest.approx((0.2, 0.3))
    assert (steps[0]["weight/ast"], steps[-1]["weight/ast"]) == pytest.approx((0.0, 0.2))
    assert steps[1]["weight/jsd"] == pytest.approx(0.35)
    # the student took the teacher's tokenizer
    student = DiffusionLM.load(tmp_path / "s" / "final")
    assert student.tokenizer.get_vocab() == DiffusionLM.load(teacher_dir).tokenizer.get_vocab()
    assert student.backbone.config.hidden_size == 16


def test_a_student_with_layer_projection_resumes_exactly(small_tasks_file, teacher_dir, tmp_path):
    comps = [{"name": "ce", "weight": {"start": 1.0, "end": 0.5}}, {"name": "kl", "temperature": 2.0}, "layer"]
    train(_student(small_tasks_file, tmp_path / "a", teacher_dir, comps, max_steps=4, save_every=2))
    train(_student(small_tasks_file, tmp_path / "b", teacher_dir, comps, max_steps=4, save_every=2))
    ckpt = tmp_path / "b" / "checkpoints"
    shutil.rmtree(tmp_path / "b" / "final")
    shutil.rmtree(ckpt / "step_0000004")
    (ckpt / "latest").write_text("step_0000002\n")
    train(_student(small_tasks_file, tmp_path / "b", teacher_dir, comps, max_steps=4, save_every=2))
    rows = [[json.loads(x) for x in open(tmp_path / r / "metrics.jsonl")] for r in "ab"]
    last = [next(x for x in reversed(rs) if x["step"] == 4 and "loss/total" in x) for rs in rows]
    for key in ("loss/total", "loss/layer", "loss/kl", "weight/ce"):
        assert last[0][key] == pytest.approx(last[1][key], rel=1e-5), key
    saved = torch.load(ckpt / "step_0000004" / "trainer.pt", weights_only=False)["components"]
    assert any("projections" in k for k in saved)


def test_teacher_mistakes_are_one_clear_error(small_tasks_file, teacher_dir, tmp_path):
    with pytest.raises(TrainError, match="not a Trident model directory"):
        train(_student(small_tasks_file, tmp_path / "m", tmp_path / "nowhere", ["ce", "kl"], max_steps=1))
    # a student with a tokenizer of its own: the teacher's distributions are over other ids
    own = SFTConfig(tasks=small_tasks_file, out=tmp_path / "t", tokenizer=_other_tokenizer(small_tasks_file, tmp_path),
                    loss=LossConfig(components=["ce", "kl"], teacher=teacher_dir), max_steps=1,
                    **{**TINY, "model": STUDENT})
    with pytest.raises(TrainError, match="another tokenizer") as err:
        train(own)
    assert "tokenizer=" in str(err.value)
    assert not (tmp_path / "t" / "checkpoints").exists()


def _other_tokenizer(small_tasks_file, tmp_path):
    from pretrain.tokenizer import save_tokenizer, task_texts, train_tokenizer
    from sandbox.tasks import load_tasks

    path = tmp_path / "other-tok"
    save_tokenizer(train_tokenizer(task_texts(load_tasks(small_tasks_file)), vocab_size=300), path)
    return path


# ------------------------------------------------------------------ sequence-level KD


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "trident", *args], capture_output=True, text=True, env=env)


def test_seqkd_writes_best_of_n_resumes_and_feeds_a_student(small_tasks_file, teacher_dir, tmp_path):
    out = tmp_path / "kd.jsonl"
    args = ["seqkd", "--teacher", str(teacher_dir), "--tasks", str(small_tasks_file), "--out", str(out), "n=3",
            "max_tasks=20", "batch_size=30", "progress=false", "sampler.steps=8"]
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    rows = [json.loads(x) for x in open(out)]
    kept = [r for r in rows if r["text"] is not None]
    assert len(rows) == 20 and kept and all(r["n"] == 3 and r["score"] <= 0 for r in kept)
    again = _cli(*args)
    assert again.returncode == 0 and "0 of 20" in again.stdout  # nothing redone
    assert len(open(out).readlines()) == len(rows)
    # by execution: only samples that pass are kept
    ex = tmp_path / "kd-exec.jsonl"
    by_exec = _cli(*[a if a != str(out) else str(ex) for a in args], "select=execution", "workers=1")
    assert by_exec.returncode == 0, by_exec.stderr
    assert all(r["passed"] is True for r in map(json.loads, open(ex)) if r["text"] is not None)
    # a student trains on them mixed with gold, and measures semantic proximity to them
    cfg = _student(small_tasks_file, tmp_path / "s", teacher_dir,
                   ["ce", {"name": "semantic", "reference": "both", "weight": 0.5}], max_steps=2, save_every=2,
                   sequence_kd=SequenceKDConfig(path=out, ratio=1.0))
    assert train(cfg)["steps"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": 1}\n')
    with pytest.raises(TrainError, match="line 1"):
        train(_student(small_tasks_file, tmp_path / "s2", teacher_dir, ["ce"], max_steps=1,
                       sequence_kd=SequenceKDConfig(path=bad)))


def test_cli_names_an_unknown_component_and_a_missing_teacher(small_tasks_file, tmp_path):
    bad = _cli("sft", "--tasks", str(small_tasks_file), "--out", str(tmp_path / "x"), "loss.components=[ce, nope]")
    assert bad.returncode == 2 and "nope" in bad.stderr and "focal" in bad.stderr and "Traceback" not in bad.stderr
    nt = _cli("sft", "--tasks", str(small_tasks_file), "--out", str(tmp_path / "y"), "loss.components=[ce, jsd]")
    assert nt.returncode == 2 and "loss.teacher" in nt.stderr
    missing = _cli("seqkd", "--tasks", str(small_tasks_file), "--out", str(tmp_path / "z.jsonl"))
    assert missing.returncode == 1 and "--teacher" in missing.stderr


@pytest.mark.parametrize("preset", ["student-ce", "student-kl", "student-trident", "student-trident-layer"])
def test_the_distillation_presets_load(preset):
    from pathlib import Path

    from trident.config import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "distill" / f"{preset}.yaml"
    cfg = load_config(SFTConfig, path)
    comps = Components.from_config(cfg.loss.components)
    assert comps.needs_teacher == (cfg.loss.teacher is not None)
    if preset == "student-trident":  # the Trident preset: focal 0.5→0.3, jsd 0.3→0.4, semantic 0.2→0.3
        got = {c.name: (c.schedule.start, c.schedule.end) for c in comps.items}
        assert got == {"focal": (0.5, 0.3), "jsd": (0.3, 0.4), "semantic": (0.2, 0.3)}


@pytest.mark.parametrize("beta, temperature", [(0.5, 1.0), (0.2, 2.0)])
def test_the_jsd_component_is_trls_generalised_jsd_times_t_squared(tiny_model, beta, temperature):
    """The component the trainer runs (through the loss state's shared tempered softmaxes), not
    only pretrain.distill.jsd, matches TRL's GKD loss."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDTrainer

    from pretrain.losses import LossState

    student, teacher, targets, kind = _state_inputs(V=len(tiny_model.tokenizer), seed=3)
    state = LossState(student, targets, targets, kind, torch.ones(kind.shape), torch.full((3,), 0.5),
                      tiny_model.special, teacher_logits=teacher)
    comps = Components([build_component("jsd", beta=beta, temperature=temperature),
                        build_component("kl", temperature=temperature)])
    comps.token_loss(state)
    theirs = GKDTrainer.generalized_jsd_loss(student.detach(), teacher, beta=beta, temperature=temperature,
                                             reduction="none").sum(-1)
    assert torch.allclose(state.parts["jsd"].detach(), theirs * temperature**2, atol=1e-4)
    # kl at the same temperature reads the same cached softmaxes and is still KL(teacher ‖ student) · T²
    from pretrain.distill import kl

    assert torch.allclose(state.parts["kl"].detach(), kl(student.detach(), teacher, temperature), atol=1e-4)
