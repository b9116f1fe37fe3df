"""`trident sft`: resume exactness, the critic's two-pass labels, the CLI and its errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from pretrain.corruption import KIND_IDENTITY, KIND_MASKED, KIND_WRONG
from pretrain.data import DataConfig, Encoder, collate
from pretrain.errors import TrainError
from pretrain.losses import DiffusionLoss
from pretrain.model import BackboneConfig
from pretrain.sft import OptimConfig, SFTConfig, Step, train

TINY = dict(vocab_size=600, batch_size=8, final_eval=False, log_every=1, eval_every=2, eval_tasks=8, progress=False, precision="fp32",
            model=BackboneConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 max_position_embeddings=128),
            data=DataConfig(slot_len=24, max_prompt=48))


def _weights(folder):
    return load_file(str(folder / "final" / "model.safetensors"))


def test_n_steps_equal_half_then_resume_then_half(small_tasks_file, tmp_path):
    straight = SFTConfig(tasks=small_tasks_file, out=tmp_path / "a", max_steps=6, save_every=3, **TINY)
    train(straight)
    resumed = SFTConfig(tasks=small_tasks_file, out=tmp_path / "b", max_steps=6, save_every=3, **TINY)
    train(resumed)
    # Take run b back to its step-3 checkpoint, as if it had been stopped there, and go on.
    ckpt = tmp_path / "b" / "checkpoints"
    shutil.rmtree(tmp_path / "b" / "final")
    shutil.rmtree(ckpt / "step_0000006")
    (ckpt / "latest").write_text("step_0000003\n")
    summary = train(resumed)
    assert summary["steps"] == 6
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    # the modifier state came back too: the learned [MASK] bias is the same
    meta = [json.loads((tmp_path / r / "final" / "trident_model.json").read_text()) for r in "ab"]
    assert meta[0]["mask_logit_bias"] == pytest.approx(meta[1]["mask_logit_bias"], abs=1e-7)
    assert meta[0]["mask_logit_bias"] != 0.0
    # metrics of the resumed steps match the straight run's
    rows = [[json.loads(x) for x in open(tmp_path / r / "metrics.jsonl")] for r in "ab"]
    last = [next(x for x in reversed(rs) if x["step"] == 6 and "loss/total" in x) for rs in rows]
    assert last[0]["loss/total"] == pytest.approx(last[1]["loss/total"], rel=1e-5)


def test_training_lowers_the_loss(small_tasks_file, tmp_path):
    cfg = SFTConfig(tasks=small_tasks_file, out=tmp_path / "r", max_steps=30, save_every=30,
                    optim=OptimConfig(lr=1e-2, warmup_steps=2), **TINY)
    summary = train(cfg)
    rows = [json.loads(x) for x in open(tmp_path / "r" / "metrics.jsonl")]
    losses = [r["loss/diffusion"] for r in rows if "loss/diffusion" in r]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert "valid/loss" in summary and summary["steps"] == 30
    assert any("tfevents" in p.name for p in (tmp_path / "r").iterdir())  # TensorBoard too


def test_critic_input_and_labels(small_tasks, tiny_model):
    cfg = SFTConfig(**{**TINY, "data": DataConfig(slot_len=24, max_prompt=48)})
    enc = Encoder(tiny_model.tokenizer, cfg.data)
    batch = collate([e for e in (enc.encode(t) for t in small_tasks[:16]) if e], tiny_model.special, 0.05)
    step = Step(tiny_model, DiffusionLoss.from_config([]), cfg, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    corr = step.corrupt(batch, g)
    L = tiny_model.slot_len
    logits = tiny_model(corr.input_ids, batch.attention_mask, last=L).logits.detach()
    critic_in, labels = step.critic_input(batch, corr, logits, torch.Generator().manual_seed(1))
    kind, seen, clean = corr.kind[:, -L:], critic_in[:, -L:], batch.input_ids[:, -L:]
    masked = kind == KIND_MASKED
    kept_masked = masked & (seen == tiny_model.special.mask)
    filled = masked & ~kept_masked
    assert filled.any() and kept_masked.any()
    assert (labels[kind == KIND_IDENTITY] == 1).all()
    assert (labels[kind == KIND_WRONG] == 0).all()
    assert torch.equal(labels[filled].bool(), (seen == clean)[filled])
    assert not torch.isin(seen[filled], torch.tensor(tiny_model.special.never_generated())).any()
    outside = ~batch.slot_mask
    assert torch.equal(critic_in[outside], batch.input_ids[outside])  # context untouched


def test_an_existing_run_is_never_overwritten(small_tasks_file, tmp_path):
    cfg = SFTConfig(tasks=small_tasks_file, out=tmp_path / "r", max_steps=2, save_every=2, **TINY)
    train(cfg)
    shutil.rmtree(tmp_path / "r" / "final")
    before = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    with pytest.raises(TrainError, match="already holds a run"):
        train(SFTConfig(tasks=small_tasks_file, out=tmp_path / "r", max_steps=2, save_every=2, resume=False, **TINY))
    other = {**TINY, "model": BackboneConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64, max_position_embeddings=128)}
    with pytest.raises(TrainError, match="different model"):
        train(SFTConfig(tasks=small_tasks_file, out=tmp_path / "r", max_steps=2, save_every=2, **other))
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == before


def _cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "trident", "sft", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_cli_smoke_and_one_clear_error_per_mistake(small_tasks_file, tmp_path):
    tiny = ["vocab_size=600", "batch_size=4", "max_steps=3", "save_every=3", "progress=false", "model.hidden_size=32",
            "model.num_hidden_layers=1", "model.num_attention_heads=2", "model.intermediate_size=64", "data.slot_len=24",
            "data.max_prompt=48", "evaluation.max_tasks=6", "evaluation.batch_size=6"]
    ok = _cli("--tasks", str(small_tasks_file), "--out", str(tmp_path / "run"), *tiny)
    assert ok.returncode == 0, ok.stderr
    assert "done at step 3" in ok.stdout and (tmp_path / "run" / "final" / "model.safetensors").is_file()
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert report["tasks"] == 6 and set(report) >= {"retrieval", "constant", "diffusion", "edit", "critic"}
    assert 0 <= report["diffusion"]["pass"] <= 1 and "wrong-token AUROC" in ok.stdout
    again = _cli("--tasks", str(small_tasks_file), "--out", str(tmp_path / "run"), *tiny)
    assert again.returncode == 0 and "finished" in again.stdout

    missing = _cli("--tasks", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x"), *tiny)
    assert missing.returncode == 1 and "trident mine" in missing.stderr and "Traceback" not in missing.stderr
    bad_mod = _cli("--tasks", str(small_tasks_file), "--out", str(tmp_path / "y"), "modifiers=[{name: nope}]")
    assert bad_mod.returncode == 2 and "nope" in bad_mod.stderr and "dynamic_logit_bias" in bad_mod.stderr
    assert "Traceback" not in bad_mod.stderr
    bad_heads = _cli("--tasks", str(small_tasks_file), "--out", str(tmp_path / "z"), "model.hidden_size=30")
    assert bad_heads.returncode == 2 and "num_attention_heads" in bad_heads.stderr


def test_the_preset_config_is_the_default():
    from dataclasses import asdict
    from pathlib import Path

    from trident.config import load_config

    preset = Path(__file__).resolve().parents[2] / "configs" / "sft.yaml"
    assert asdict(load_config(SFTConfig, preset)) == asdict(SFTConfig())


def test_precision_auto_is_bf16_only_where_bfloat16_is_native(tiny_model):
    from pretrain.hardware import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    step = Step(tiny_model, DiffusionLoss.from_config([]), SFTConfig(**{**TINY, "precision": "auto"}), cpu)
    assert step.precision == resolve_precision("auto", cpu)
    with step.autocast():  # what the step computes in follows the resolved precision
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == (torch.bfloat16 if step.precision == "bf16" else torch.float32)


def test_explicit_bf16_on_a_cpu_without_it_warns_and_names_the_fix(small_tasks_file, tmp_path, capsys):
    from pretrain.hardware import native_bf16

    if native_bf16():
        pytest.skip("this CPU computes bfloat16 natively: nothing to warn about")
    cfg = SFTConfig(tasks=small_tasks_file, out=tmp_path / "r", max_steps=1, **{**TINY, "precision": "bf16"})
    train(cfg)
    out = capsys.readouterr().out
    assert "precision=bf16 on a CPU without native bfloat16" in out and "precision=fp32" in out
    assert "on cpu (bf16)" in out  # asked for, so kept
