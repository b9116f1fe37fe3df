"""The critic as a ranker: how likely a whole assertion is to pass, and to kill a mutant if it
passes, learned from candidates that were executed — never from valid or test verdicts.

The per-token critic head says which positions of a slot will end up correct (SFT trains it on
corrupted targets); its readout ``V = exp(Σ log σ(z_i))`` is RL's value, and it decides what
is remasked. Whether an assertion *passes* and *kills* is another question, which execution
answers: RL runs every sample of a training task in the sandbox (``samples.jsonl``), and
evaluation can run more. A :class:`Ranker` fits two logistic heads on what the model computes
for a candidate — its final hidden states over the slot (mean-pooled), the critic readout and
the candidate's mean token log-likelihood — to those verdicts:

- ``pass``: P(the candidate passes);
- ``kill``: P(it kills at least one mutant | it passes), fit on the passing ones;

and ranks a task's candidates by ``P(pass) · P(kill | pass)``. Candidates are cached by task and
text (:func:`executed` keeps each pair once). Heads are fit by L-BFGS with an L2 penalty on
standardised features; a ranker is saved as ``ranker.json`` beside the model it reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from pretrain.data import Encoder, collate
from pretrain.evaluate import start_rows
from pretrain.model import DiffusionLM
from pretrain.sampler import slot_scores
from sandbox.tasks import Task

from .ppo import value_readout
from .rollout import slot_positions

__all__ = ["Executed", "Ranker", "executed", "features", "fit"]

FILE = "ranker.json"


@dataclass(frozen=True)
class Executed:
    """One executed candidate: its task, text, whether it passed and killed at least one mutant."""

    task_id: str
    text: str
    passed: bool
    killed: bool


def executed(paths: Iterable[str | Path], allowed: set[str]) -> list[Executed]:
    """The executed candidates of RL's ``samples.jsonl`` files whose task is in ``allowed`` (the
    training split's ids), each (task, text) once (its first verdict), ``infra`` ones left out."""
    seen: dict[tuple[str, str], Executed] = {}
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                key = (row["task_id"], row["candidate"])
                if row["task_id"] not in allowed or row["status"] == "infra" or key in seen:
                    continue
                seen[key] = Executed(row["task_id"], row["candidate"], row["status"] == "passed", int(row["kills"]) > 0)
    return list(seen.values())


@torch.no_grad()
def features(model: DiffusionLM, encoder: Encoder, tasks: Sequence[Task], texts: Sequence[str],
             batch_size: int = 64) -> torch.Tensor:
    """(N, H + 2): for each (task, candidate) pair, the model's final hidden states over the
    candidate's slot positions (mean-pooled), the critic readout log V and the mean token
    log-likelihood of the candidate in its slot (a candidate longer than the slot reads as an empty one)."""
    out = []
    L = model.slot_len
    for lo in range(0, len(texts), batch_size):
        rows = start_rows(encoder, tasks[lo:lo + batch_size], list(texts[lo:lo + batch_size]))
        batch = collate(rows, model.special, 0.0).to(model.device)
        ids = batch.input_ids
        hidden = model(ids, batch.attention_mask, last=L).hidden.float()  # (B, L, H)
        ll, critic = slot_scores(model, ids, batch.attention_mask)
        slot = ids[:, -L:]
        content = ((slot != model.special.pad) & (slot != model.special.mask)).float()
        n = content.sum(-1).clamp(min=1)
        pooled = (hidden * content[..., None]).sum(1) / n[:, None]
        log_v = value_readout(critic, slot_positions(slot, model.special.pad))
        out.append(torch.cat([pooled, log_v[:, None], (ll / n)[:, None]], dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.backbone.config.hidden_size + 2)


def _logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Weights (D + 1,) of an L2-penalised logistic regression (bias last)."""
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    xb = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    yd = y.double()
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xb @ w, yd) + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


@dataclass
class Ranker:
    """Two logistic heads on :func:`features` (see the module docstring)."""

    mean: torch.Tensor
    std: torch.Tensor
    pass_w: torch.Tensor
    kill_w: torch.Tensor
    trained_on: dict[str, float]

    def _logits(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        z = ((x.double() - self.mean) / self.std)
        return z @ w[:-1] + w[-1]

    def p_pass(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._logits(x, self.pass_w))

    def p_kill(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._logits(x, self.kill_w))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """P(pass) · P(kill | pass): the ranking key."""
        return self.p_pass(x) * self.p_kill(x)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE
        data = {k: getattr(self, k).tolist() for k in ("mean", "std", "pass_w", "kill_w")}
        path.write_text(json.dumps({**data, "trained_on": self.trained_on}) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Ranker | None:
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(*(torch.tensor(data[k], dtype=torch.float64) for k in ("mean", "std", "pass_w", "kill_w")),
                   trained_on=data["trained_on"])


def fit(x: torch.Tensor, passed: Sequence[bool], killed: Sequence[bool], *, l2: float = 1e-2) -> Ranker:
    """Fit both heads; the kill head on the passing candidates only. Raises ValueError when a
    head has only one class to learn from."""
    y_pass = torch.tensor([float(p) for p in passed])
    ok = torch.tensor([bool(p) for p in passed])
    y_kill = torch.tensor([float(k) for k in killed])[ok]
    for name, y in (("pass", y_pass), ("kill among passing", y_kill)):
        if len(y) == 0 or y.min() == y.max():
            raise ValueError(f"the {name} head has {len(y)} executed candidates of one class only: run more RL "
                             f"iterations (or give more samples files) before fitting a ranker")
    mean = x.double().mean(0)
    std = x.double().std(0).clamp(min=1e-6)
    z = (x.double() - mean) / std
    info = {"candidates": float(len(x)), "passed": float(y_pass.sum()), "killed": float(y_kill.sum())}
    if not math.isfinite(float(z.sum())):
        raise ValueError("the features are not finite")
    return Ranker(mean, std, _logistic(z, y_pass, l2), _logistic(z[ok], y_kill, l2), info)
