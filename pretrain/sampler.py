"""Masked-diffusion sampling of the slot, and the trajectory record RL learns from.

Notation: B batch, T row length, L slot length (the last L positions of every row), V
vocabulary, K denoising steps, S block size, k a step (0-based), U_k the positions the policy
commits at step k.

One step: run the model on the current slot state x_k, build the *sampling distribution* at
every slot position (:func:`sampling_log_probs`), draw a candidate token everywhere, then commit
the candidates at the best-scored masked positions of the active window, and optionally remask a
few committed ones. The pitfalls this module is built around (measured on a tiny model: a
whole-slot confidence-ordered sampler commits the very confident trailing [PAD]/[EOS] first and
collapses to ``assert``):

- [PAD] is never an action. After the first [EOS] every position is [PAD] automatically
  ("forced", not recorded as an action, never remasked); a [PAD] with no [EOS] before it is a
  position still to decide and reads as [MASK]. [EOS] is an action, allowed at a position only
  when no token other than [PAD]/[MASK] follows it, so committed tokens are never overwritten
  by an early end and a protected token can't be cut off.
- Tokens in ``special.never_generated()`` are never committed (removed from the distribution).
- A predicted [MASK] (after adding ``model.mask_logit_bias``) means "not ready": such a position
  is committed only when the step needs more commits than there are ready positions.
- Semi-autoregressive blocks: only the window up to the leftmost block that still holds [MASK]
  is eligible; steps are shared among the blocks still to do, and the last step commits
  everything left, so every run ends fully committed after K steps.

RL: ``log π(a_k | x_k) = Σ_{i∈U_k} log p(a_{k,i} | x_k)`` under exactly the distribution that was
sampled from. :class:`Trajectory` records x_k, U_k, a_k and these sums; :func:`recompute_logprobs`
recomputes them differentiably. Which positions are chosen (U_k) is treated as part of the
environment; only the token choices carry the policy's log-probability.
"""

from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .tokenizer import SpecialIds

Schedule = Literal["linear", "cosine"]
Unmask = Literal["confidence", "margin", "entropy", "random"]
Remask = Literal["none", "confidence", "critic"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
UNMASK_POLICIES: tuple[str, ...] = get_args(Unmask)
REMASK_POLICIES: tuple[str, ...] = get_args(Remask)


@dataclass
class SamplerConfig:
    """How the slot is denoised. Bad values fail here with a message that says how to fix them."""

    steps: int = field(default=16, metadata={"help": "K denoising steps in total (one model forward each); the last one commits everything left"})
    block_size: int = field(default=4, metadata={"help": "semi-autoregressive block size S, filled left to right; >= slot length means the whole slot at once. Raised to ceil(L/steps) when steps < number of blocks"})
    schedule: Schedule = field(default="linear", metadata={"help": "how many of a block's masked positions are committed by each of its steps: linear | cosine (few first, many last)"})
    unmask: Unmask = field(default="confidence", metadata={"help": "which masked positions to commit first: confidence (p of the drawn token) | margin (top1 - top2) | entropy (lowest first) | random"})
    remask: Remask = field(default="none", metadata={"help": "which committed positions to remask: none | confidence (lowest model probability of the token there) | critic (lowest sigma(critic))"})
    remask_budget: float = field(default=0.0, metadata={"help": "fraction of committed positions remasked at step 0, decaying linearly to 0 at the last step"})
    remask_randomness: float = field(default=0.0, metadata={"help": "rho in score = (1-rho)*policy score + rho*uniform noise when choosing positions to remask"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature; 0 = greedy (argmax), whose recorded log-probs are those of temperature 1"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (1 = off)"})
    seed: int = field(default=0, metadata={"help": "seed of the sampler's torch.Generator (recorded in the trajectory)"})
    eos_when_parses: bool = field(default=False, metadata={"help": "[EOS] only right after a fully committed assertion that parses (needs model.tokenizer); stops early ends like 'assert len(G) =='"})
    syntax_guard: bool = field(default=False, metadata={"help": "at the next position of a left-to-right fill, never a token that closes a bracket that is not open, starts a comment, or leaves more brackets/strings open than positions left (needs model.tokenizer)"})
    edit_threshold: float = field(default=0.5, metadata={"help": "edit_start: remask the retrieved assertion's positions whose sigma(critic) is below this"})

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"sampler.steps={self.steps} must be >= 1 (16 is a good start)")
        if self.block_size < 1:
            raise ValueError(f"sampler.block_size={self.block_size} must be >= 1; use the slot length for whole-slot sampling")
        for name, value, valid in (("schedule", self.schedule, SCHEDULES), ("unmask", self.unmask, UNMASK_POLICIES),
                                   ("remask", self.remask, REMASK_POLICIES)):
            if value not in valid:
                raise ValueError(f"sampler.{name}={value!r} is not one of {', '.join(valid)}")
        if not 0.0 <= self.remask_budget <= 1.0:
            raise ValueError(f"sampler.remask_budget={self.remask_budget} must lie in [0, 1] (a fraction of committed positions)")
        if self.remask == "none" and self.remask_budget > 0:
            raise ValueError(f"sampler.remask_budget={self.remask_budget} has no effect with sampler.remask='none'; "
                             f"set remask to confidence or critic, or the budget to 0")
        if not 0.0 <= self.remask_randomness <= 1.0:
            raise ValueError(f"sampler.remask_randomness={self.remask_randomness} must lie in [0, 1]")
        if self.temperature < 0:
            raise ValueError(f"sampler.temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampler.top_p={self.top_p} must lie in (0, 1] (1 = off)")
        if not 0.0 <= self.edit_threshold <= 1.0:
            raise ValueError(f"sampler.edit_threshold={self.edit_threshold} must lie in [0, 1] (it is compared with sigma(critic))")


@dataclass
class Trajectory:
    """What RL needs to recompute ``log π(a_k | x_k)`` exactly; tensors on CPU.

    ``states[k]`` is x_k, the slot the model saw at step k (forced [PAD] already in place);
    ``committed[k]`` is U_k (forced [PAD] fill excluded); ``tokens[k]`` holds a_k where
    ``committed[k]`` (x_k elsewhere); ``logprobs[k]`` is Σ_{i∈U_k} log p(a_{k,i} | x_k).
    ``critic[k]`` are the critic logits the model gave on x_k (zeros on steps where no row was
    still deciding): RL's value ``V(x_k)`` at no extra forward.
    ``remasked[k]`` are the positions turned back into [MASK] after step k's commits, so
    x_{k+1} = normalize(remask(commit(x_k))). ``active[k]`` is False for rows that had nothing
    left to decide (their U_k is empty and their log-prob 0). With ``temperature == 0`` the tokens
    were argmax choices and the log-probs are those of the temperature-1 distribution.
    """

    states: torch.Tensor  # (K, B, L) long
    committed: torch.Tensor  # (K, B, L) bool
    tokens: torch.Tensor  # (K, B, L) long
    logprobs: torch.Tensor  # (K, B) float32
    remasked: torch.Tensor  # (K, B, L) bool
    active: torch.Tensor  # (K, B) bool
    temperature: float
    top_p: float
    mask_logit_bias: float
    seed: int
    eos_when_parses: bool = False
    syntax_guard: bool = False
    critic: torch.Tensor | None = None  # (K, B, L) float32

    def select(self, rows: torch.Tensor | Sequence[int]) -> Trajectory:
        """The trajectory of a subset of rows (e.g. a PPO minibatch); settings are shared."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return Trajectory(self.states[:, rows], self.committed[:, rows], self.tokens[:, rows], self.logprobs[:, rows],
                          self.remasked[:, rows], self.active[:, rows], self.temperature, self.top_p,
                          self.mask_logit_bias, self.seed, self.eos_when_parses, self.syntax_guard,
                          None if self.critic is None else self.critic[:, rows])


@dataclass
class SampleResult:
    tokens: torch.Tensor  # (B, L) final slot on the input's device: no [MASK]; [PAD] only after the first [EOS] (or where protected)
    trajectory: Trajectory | None  # on CPU; None when record=False


# ---------------------------------------------------------------------------------- distribution


def eos_allowed(state: torch.Tensor, special: SpecialIds) -> torch.Tensor:
    """(B, L) bool: [EOS] may be committed at i only if every later position is [MASK] or [PAD].

    So an end never cuts off a committed (or protected) token, and two [EOS] never coexist.
    """
    content = (state != special.mask) & (state != special.pad)  # (B, L)
    later = content.flip(-1).cumsum(-1).flip(-1) - content.long()  # (B, L) content strictly after i
    return later == 0


def parse_gate(state: torch.Tensor, special: SpecialIds, decode: Callable[[list[int]], str]) -> torch.Tensor:
    """(B, L) bool: where [EOS] may go when an end needs a parsing assertion before it.

    Only at a row's first [MASK] whose every earlier position is committed content, and only
    if that content decodes to Python made of assert statements. A function of the state
    alone, so recomputed log-probs see the same gate.
    """
    gate = torch.zeros(state.shape, dtype=torch.bool)
    for b, j, prefix in _next_fills(state, special):
        gate[b, j] = is_assertion(decode(prefix))
    return gate.to(state.device)


def _next_fills(state: torch.Tensor, special: SpecialIds) -> list[tuple[int, int, list[int]]]:
    """``(row, j, prefix)`` for each row whose first [MASK] ``j`` has only committed content
    before it (no [PAD]/[EOS]): the position a left-to-right fill writes next, and the tokens
    before it. The gates below act there only."""
    masked = (state == special.mask).cpu()
    rows = state.cpu().tolist()
    out = []
    for b in range(state.shape[0]):
        if not masked[b].any():
            continue
        j = int(masked[b].float().argmax())
        prefix = rows[b][:j]
        if special.pad not in prefix and special.eos not in prefix:
            out.append((b, j, prefix))
    return out


_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = set(_OPEN.values())
_SYNTAX_CHARS = set("()[]{}'\"#\\")

# A scan state: (open brackets, open string's quote or "", a backslash pending inside it).
_Scan = tuple[tuple[str, ...], str, bool]


def _scan(state: _Scan, text: str) -> _Scan | None:
    """The bracket/string state after ``text``; None where it closes what is not open or opens a comment."""
    stack, quote, escaped = list(state[0]), state[1], state[2]
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif text.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
            elif c == "\n" and len(quote) == 1:
                return None
        elif c in "'\"":
            quote = c * 3 if text.startswith(c * 3, i) else c
            i += len(quote)
            continue
        elif c in _OPEN:
            stack.append(_OPEN[c])
        elif c in _CLOSE:
            if not stack or stack.pop() != c:
                return None
        elif c == "#":
            return None
        i += 1
    return tuple(stack), quote, escaped


class SyntaxGuard:
    """Which tokens may come next after a committed prefix so that its brackets and strings can
    still close: none that closes a bracket that is not open (or the wrong one), starts a comment,
    or leaves more open than there are positions left. Built once per tokenizer."""

    def __init__(self, tokenizer, special: SpecialIds) -> None:
        V = len(tokenizer)
        texts = [tokenizer.decode([v]) for v in range(V)]
        skip = set(special.never_generated()) | {special.pad, special.eos, special.mask}
        self.vocab = V
        self.marked = [v for v in range(V) if v not in skip and _SYNTAX_CHARS & set(texts[v])]
        self.texts = {v: texts[v] for v in self.marked}
        self._after: dict[_Scan, tuple[torch.Tensor, torch.Tensor]] = {}

    def _marked_after(self, state: _Scan) -> tuple[torch.Tensor, torch.Tensor]:
        """For the marked tokens: whether each may follow ``state``, and the open depth after it."""
        if state not in self._after:
            ok, depth = [], []
            for v in self.marked:
                nxt = _scan(state, self.texts[v])
                ok.append(nxt is not None)
                depth.append(len(nxt[0]) + bool(nxt[1]) if nxt is not None else 0)
            self._after[state] = (torch.tensor(ok), torch.tensor(depth))
        return self._after[state]

    def allowed(self, prefix: str, left: int) -> torch.Tensor | None:
        """(V,) bool for the token after ``prefix`` when ``left`` positions follow it; None when
        the prefix itself cannot close any more (nothing to guard)."""
        state = _scan(((), "", False), prefix)
        if state is None:
            return None
        depth = len(state[0]) + bool(state[1])
        out = torch.full((self.vocab,), depth <= left, dtype=torch.bool)
        ok, after = self._marked_after(state)
        out[self.marked] = ok & (after <= left)
        return out if out.any() else None


@functools.lru_cache(maxsize=4)
def _guard(tokenizer, special: SpecialIds) -> SyntaxGuard:
    return SyntaxGuard(tokenizer, special)


def syntax_gate(state: torch.Tensor, special: SpecialIds, tokenizer) -> torch.Tensor:
    """(B, L, V) bool: tokens banned by :class:`SyntaxGuard` at a row's first [MASK] when every
    position before it holds committed content (the position a left-to-right sampler fills
    next; the slot's first position too); nothing elsewhere.
    A function of the state alone, so recomputed log-probs see the same gate."""
    guard = _guard(tokenizer, special)
    B, L = state.shape
    banned = torch.zeros((B, L, guard.vocab), dtype=torch.bool)
    for b, j, prefix in _next_fills(state, special):
        allowed = guard.allowed(tokenizer.decode(prefix), L - j - 1)
        if allowed is not None:
            banned[b, j] = ~allowed
    return banned.to(state.device)


def _gates(model: nn.Module, state: torch.Tensor, eos_when_parses: bool, syntax_guard: bool):
    """The optional gates of :func:`sampling_log_probs` for ``state``: (eos_gate, token_ban)."""
    special: SpecialIds = model.special
    eos_gate = parse_gate(state, special, model.tokenizer.decode) if eos_when_parses else None
    token_ban = syntax_gate(state, special, model.tokenizer) if syntax_guard else None
    return eos_gate, token_ban


def is_assertion(text: str) -> bool:
    """``text`` parses as Python made only of assert statements (what a slot may hold)."""
    from rewards.text import parse

    tree = parse(text)
    return tree is not None and all(isinstance(node, ast.Assert) for node in tree.body)


def sampling_log_probs(
    slot_logits: torch.Tensor,
    state: torch.Tensor,
    special: SpecialIds,
    *,
    temperature: float,
    top_p: float,
    mask_logit_bias: float,
    eos_gate: torch.Tensor | None = None,
    token_ban: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's distribution at every slot position, and which positions are "ready".

    ``slot_logits`` (B, L, V), ``state`` (B, L) -> ``log_probs`` (B, L, V) fp32 with -inf on
    tokens that may not be committed, ``ready`` (B, L) bool. Used by sampling *and* by
    :func:`recompute_logprobs`, so the recorded and recomputed log-probs are the same function.
    Differentiable in ``slot_logits`` (the top-p set is a discrete choice, taken without grad).

    Order: [MASK] bias (readiness only: [MASK] is then removed, so the bias does not change the
    other tokens' probabilities), remove never_generated and [PAD] (and [EOS] where
    :func:`eos_allowed` says no), temperature (0 -> 1: greedy runs record the temperature-1
    distribution), top-p, fp32 log-softmax.
    """
    logits = slot_logits.float()  # (B, L, V)
    with torch.no_grad():
        biased_mask = logits[..., special.mask] + mask_logit_bias  # (B, L)
        others = logits.clone()
        others[..., special.mask] = float("-inf")
        ready = others.max(-1).values >= biased_mask  # (B, L) argmax after bias is not [MASK]
        banned = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        banned[list(special.never_generated()) + [special.pad]] = True
        banned = banned.expand_as(logits).clone()  # (B, L, V)
        banned[..., special.eos] |= ~eos_allowed(state, special)
        if eos_gate is not None:  # (B, L) from parse_gate
            banned[..., special.eos] |= ~eos_gate
        if token_ban is not None:  # (B, L, V) from syntax_gate
            banned |= token_ban
    tau = temperature if temperature > 0 else 1.0
    scaled = logits.masked_fill(banned, float("-inf")) / tau  # (B, L, V)
    if top_p < 1.0:
        with torch.no_grad():
            probs = scaled.softmax(-1)
            sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
            # Keep a token while the mass strictly before it is below top_p: the top one always stays.
            keep_sorted = (sorted_p.cumsum(-1) - sorted_p) < top_p
            keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        scaled = scaled.masked_fill(~keep, float("-inf"))
    return F.log_softmax(scaled, dim=-1), ready


def _unmask_score(policy: str, log_probs: torch.Tensor, token_logp: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """(B, L) in [0, 1], higher = commit first. ``log_probs`` (B, L, V), ``token_logp`` (B, L)."""
    if policy == "confidence":
        return token_logp.exp()
    if policy == "margin":
        top = log_probs.topk(2, dim=-1).values.exp()  # (B, L, 2); a lone allowed token has margin 1
        return top[..., 0] - top[..., 1]
    if policy == "entropy":
        p = log_probs.exp()
        entropy = -torch.where(p > 0, p * log_probs, torch.zeros_like(p)).sum(-1)  # (B, L)
        return torch.exp(-entropy)
    return noise


def _remaining_fraction(schedule: str, progress: torch.Tensor) -> torch.Tensor:
    """Share of a block's masked positions still masked after ``progress`` ∈ (0, 1] of its steps."""
    progress = progress.clamp(max=1.0)
    if schedule == "linear":
        left = 1.0 - progress
    else:
        left = torch.cos(progress * (math.pi / 2))
    return torch.where(progress >= 1.0, torch.zeros_like(left), left)


def _normalize(state: torch.Tensor, protected: torch.Tensor, special: SpecialIds) -> tuple[torch.Tensor, torch.Tensor]:
    """Enforce the slot layout: [PAD] after the first [EOS]; a [PAD] before it reads as [MASK].

    Returns the state and ``forced`` (B, L), the positions filled with [PAD] by the rule.
    Protected positions are left as they are. A remasked [EOS] thereby reopens the positions it
    had padded, which is how editing can lengthen an assertion.
    """
    eos = (state == special.eos).long()  # (B, L)
    after = (eos.cumsum(-1) - eos) > 0  # (B, L) some [EOS] strictly before
    forced = after & ~protected
    state = torch.where(forced, torch.full_like(state, special.pad), state)
    stray = (state == special.pad) & ~after & ~protected
    state = torch.where(stray, torch.full_like(state, special.mask), state)
    return state, forced


def _rank(key: torch.Tensor, descending: bool) -> torch.Tensor:
    """(B, L) rank of each position by ``key`` within its row (0 = first); ties by position."""
    order = key.argsort(dim=-1, descending=descending, stable=True)
    rank = torch.empty_like(order)
    positions = torch.arange(key.shape[-1], device=key.device).expand_as(order)
    return rank.scatter_(-1, order, positions)


# ---------------------------------------------------------------------------------- sampling


def _check_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  protected: torch.Tensor | None) -> tuple[int, torch.Tensor]:
    L = model.slot_len
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, T); got shape {tuple(input_ids.shape)}")
    if input_ids.shape[1] <= L:
        raise ValueError(f"rows of length {input_ids.shape[1]} cannot hold a prompt and the model's slot of "
                         f"{L} positions; build inputs with pretrain.data (the slot is the last L positions)")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}")
    B = input_ids.shape[0]
    if protected is None:
        return L, torch.zeros((B, L), dtype=torch.bool, device=input_ids.device)
    if protected.shape != (B, L):
        raise ValueError(f"protected must be (B, L) = {(B, L)} over the slot; got {tuple(protected.shape)}")
    protected = protected.to(device=input_ids.device, dtype=torch.bool)
    if (protected & (input_ids[:, -L:] == model.special.mask)).any():
        raise ValueError("a protected slot position holds [MASK]; protect only positions whose token is given")
    return L, protected


@torch.no_grad()
def diffusion_generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: SamplerConfig,
    *,
    protected: torch.Tensor | None = None,
    record: bool = True,
) -> SampleResult:
    """Denoise the slot (the last ``model.slot_len`` positions of ``input_ids`` (B, T)) in K steps.

    The slot of ``input_ids`` is the start state: all [MASK] to generate, or any tokens to edit
    (see :func:`edit_start`); given non-[MASK] tokens count as committed (remaskable unless
    ``protected`` (B, L) bool says otherwise). Deterministic given ``cfg.seed``, the batch and the
    device. The model's train/eval mode is left as it is: call ``model.eval()`` first.
    """
    special: SpecialIds = model.special
    L, protected = _check_inputs(model, input_ids, attention_mask, protected)
    B = input_ids.shape[0]
    device = input_ids.device
    K = cfg.steps
    S = max(cfg.block_size, math.ceil(L / K))  # with fewer steps than blocks, wider blocks
    n_blocks = math.ceil(L / S)
    bias = float(model.mask_logit_bias)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    neg_inf = float("-inf")

    prompt = input_ids[:, :-L]  # (B, T - L)
    state, forced = _normalize(input_ids[:, -L:].clone(), protected, special)  # (B, L)
    pos = torch.arange(L, device=device)  # (L,)
    block_of = pos // S  # (L,)
    blocks = torch.arange(n_blocks, device=device)  # (n_blocks,)
    # Per row: the current block, the step it became current, its step budget and its masked
    # count then. The window (positions < end of current block) is what may be committed.
    current = torch.full((B,), -1, dtype=torch.long, device=device)
    block_start = torch.zeros(B, dtype=torch.long, device=device)
    block_steps = torch.ones(B, dtype=torch.long, device=device)
    block_masked = torch.zeros(B, dtype=torch.long, device=device)

    if record:
        rec_states = torch.empty((K, B, L), dtype=torch.long, device=device)
        rec_committed = torch.zeros((K, B, L), dtype=torch.bool, device=device)
        rec_tokens = torch.empty((K, B, L), dtype=torch.long, device=device)
        rec_logprobs = torch.zeros((K, B), dtype=torch.float32, device=device)
        rec_remasked = torch.zeros((K, B, L), dtype=torch.bool, device=device)
        rec_active = torch.zeros((K, B), dtype=torch.bool, device=device)
        rec_critic = torch.zeros((K, B, L), dtype=torch.float32, device=device)

    for k in range(K):
        masked = state == special.mask  # (B, L)
        if record:
            rec_states[k] = state
            rec_tokens[k] = state
        if not masked.any():
            continue  # every row is done; the remaining steps record no actions
        last = k == K - 1

        # Advance rows whose window is fully committed to the leftmost block still holding
        # [MASK], giving it a fair share of the steps left (the earlier blocks get the remainder).
        window = pos < ((current + 1) * S)[:, None]  # (B, L)
        advance = ~(masked & window).any(-1) & masked.any(-1)  # (B,)
        if advance.any():
            first = masked.float().argmax(-1)  # (B,) first masked position
            todo = (masked[:, :, None] & (block_of[None, :, None] == blocks)).any(1).sum(-1)  # (B,) blocks with [MASK]
            share = -(-(K - k) // todo.clamp(min=1))  # ceil((K - k) / todo)
            current = torch.where(advance, first // S, current)
            block_start = torch.where(advance, torch.full_like(block_start, k), block_start)
            block_steps = torch.where(advance, share, block_steps)
            window = pos < ((current + 1) * S)[:, None]
            block_masked = torch.where(advance, (masked & window).sum(-1), block_masked)
        eligible = masked & (torch.ones_like(window) if last else window)  # (B, L)

        # Only rows with something left to decide cost a forward; the others get zero logits,
        # which commit and remask nothing (they have no eligible and, finished, no remask candidates).
        alive = masked.any(-1)  # (B,)
        rows = torch.cat([prompt, state], dim=1)
        if bool(alive.all()):
            out = model(rows, attention_mask, last=L)
            logits, critic = out.logits[:, -L:].float(), out.critic[:, -L:].float()  # (B, L, V), (B, L)
        else:
            idx = alive.nonzero().flatten()
            out = model(rows[idx], attention_mask[idx], last=L)
            logits = out.logits.new_zeros((B, L, out.logits.shape[-1]), dtype=torch.float32)
            logits[idx] = out.logits[:, -L:].float()
            critic = out.critic.new_zeros((B, L), dtype=torch.float32)
            critic[idx] = out.critic[:, -L:].float()
        gate, ban = _gates(model, state, cfg.eos_when_parses, cfg.syntax_guard)
        log_probs, ready = sampling_log_probs(logits, state, special, temperature=cfg.temperature, top_p=cfg.top_p,
                                              mask_logit_bias=bias, eos_gate=gate, token_ban=ban)  # (B, L, V), (B, L)
        if cfg.temperature == 0:
            candidate = log_probs.argmax(-1)  # (B, L)
        else:
            candidate = draw(log_probs.exp(), generator)  # (B, L)
        candidate_logp = log_probs.gather(-1, candidate[..., None]).squeeze(-1)  # (B, L)
        noise = torch.rand((B, L), generator=generator, device=device)
        score = _unmask_score(cfg.unmask, log_probs, candidate_logp, noise)  # (B, L) in [0, 1]

        # How many to commit: what the block's schedule says may still be masked after this
        # step, so positions remasked earlier are made up for here; at least one per step.
        n_eligible = eligible.sum(-1)  # (B,)
        progress = (k - block_start + 1).float() / block_steps.float()
        may_stay = torch.floor(block_masked.float() * _remaining_fraction(cfg.schedule, progress)).long()
        n_commit = n_eligible if last else (n_eligible - may_stay).clamp(min=1)
        n_commit = torch.minimum(n_commit, n_eligible)
        # Ready positions first (+2 lifts them above every score in [0, 1]); not-ready ones only
        # when the step needs more commits than there are ready positions.
        key = torch.where(eligible, score + 2.0 * ready.float(), torch.full_like(score, neg_inf))
        commit = eligible & (_rank(key, descending=True) < n_commit[:, None])  # (B, L)
        # An [EOS] committed this step ends the slot: commits after it are dropped (forced [PAD]).
        drafted = torch.where(commit, candidate, state)
        eos = (drafted == special.eos).long()
        commit &= (eos.cumsum(-1) - eos) == 0
        after_commit = torch.where(commit, candidate, state)
        state, forced = _normalize(after_commit, protected, special)

        remask = torch.zeros_like(commit)
        if cfg.remask != "none" and cfg.remask_budget > 0 and not last:
            window = pos < ((current + 1) * S)[:, None]  # never beyond the current block
            unfinished = (state == special.mask).any(-1, keepdim=True)  # finished rows stop changing
            held = window & (state != special.mask) & ~protected & ~forced  # (B, L) committed, remaskable
            # Positions committed this step are not doubted on the evidence that chose them.
            candidates = held & ~commit & unfinished
            budget = cfg.remask_budget * (1.0 - k / (K - 1))
            n_remask = torch.minimum(torch.floor(budget * held.sum(-1).float()).long(), candidates.sum(-1))
            if cfg.remask == "critic":
                keep = torch.sigmoid(critic)  # (B, L) P(position ends up right)
            else:
                # The raw model probability of the visible token (no bias/temperature/masking):
                # mass the model moves to [WRONG] or elsewhere is exactly the doubt we want.
                keep = logits.softmax(-1).gather(-1, state[..., None]).squeeze(-1)  # (B, L)
            if cfg.remask_randomness > 0:
                u = torch.rand((B, L), generator=generator, device=device)
                keep = (1.0 - cfg.remask_randomness) * keep + cfg.remask_randomness * u
            key = torch.where(candidates, keep, torch.full_like(keep, float("inf")))
            remask = candidates & (_rank(key, descending=False) < n_remask[:, None])
            state, forced = _normalize(torch.where(remask, torch.full_like(state, special.mask), state), protected, special)

        if record:
            rec_committed[k] = commit
            rec_tokens[k] = after_commit
            rec_logprobs[k] = torch.where(commit, candidate_logp, torch.zeros_like(candidate_logp)).sum(-1)
            rec_remasked[k] = remask
            rec_active[k] = n_eligible > 0
            rec_critic[k] = critic

    trajectory = None
    if record:
        trajectory = Trajectory(
            states=rec_states.cpu(), committed=rec_committed.cpu(), tokens=rec_tokens.cpu(),
            logprobs=rec_logprobs.cpu(), remasked=rec_remasked.cpu(), active=rec_active.cpu(),
            temperature=float(cfg.temperature), top_p=float(cfg.top_p), mask_logit_bias=bias, seed=int(cfg.seed),
            eos_when_parses=cfg.eos_when_parses, syntax_guard=cfg.syntax_guard, critic=rec_critic.cpu(),
        )
    return SampleResult(tokens=state, trajectory=trajectory)


@dataclass
class StepEval:
    """The model's view of one recorded step for a set of rows (differentiable)."""

    logp: torch.Tensor  # (B,) log π(a_k | x_k) = Σ_{i∈U_k} log p(a_{k,i} | x_k)
    entropy: torch.Tensor  # (B,) Σ_{i∈U_k} H(p_i) of the sampling distribution at the committed positions
    critic: torch.Tensor  # (B, L) critic logits on x_k


def evaluate_step(model: nn.Module, prompt: torch.Tensor, attention_mask: torch.Tensor, state: torch.Tensor,
                  tokens: torch.Tensor, commit: torch.Tensor, trajectory: Trajectory) -> StepEval:
    """Re-run ``model`` on the recorded state x_k (``state`` (B, L) after ``prompt`` (B, T - L)) and
    score the committed ``tokens`` (B, L) at ``commit`` (B, L) under :func:`sampling_log_probs` with
    the trajectory's settings: the learner's policy log-prob, entropy and value in one forward."""
    special: SpecialIds = model.special
    L = state.shape[-1]
    out = model(torch.cat([prompt, state], dim=1), attention_mask, last=L)
    gate, ban = _gates(model, state, trajectory.eos_when_parses, trajectory.syntax_guard)
    log_probs, _ = sampling_log_probs(out.logits[:, -L:], state, special, temperature=trajectory.temperature,
                                      top_p=trajectory.top_p, mask_logit_bias=trajectory.mask_logit_bias,
                                      eos_gate=gate, token_ban=ban)  # (B, L, V)
    token_logp = log_probs.gather(-1, tokens[..., None]).squeeze(-1)  # (B, L); -inf off U_k is masked out
    logp = torch.where(commit, token_logp, torch.zeros_like(token_logp)).sum(-1)
    # -inf (banned) entries contribute 0; masked before the product so no 0·(-inf) reaches the backward
    plogp = log_probs.exp() * log_probs.masked_fill(~torch.isfinite(log_probs), 0.0)
    entropy = torch.where(commit, -plogp.sum(-1), torch.zeros_like(token_logp)).sum(-1)
    return StepEval(logp=logp, entropy=entropy, critic=out.critic[:, -L:])


def recompute_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trajectory: Trajectory,
    *,
    steps: Sequence[int] | None = None,
) -> torch.Tensor:
    """``log π(a_k | x_k)`` for the recorded steps, differentiably: (K, B), or (len(steps), B).

    Re-runs ``model`` on each recorded state x_k (with the prompt of ``input_ids``) and sums the
    log-probs of the committed tokens under :func:`sampling_log_probs` with the recorded settings
    (:func:`evaluate_step`). ``steps`` picks a subset (step subsampling); steps where no row
    committed anything cost no forward and give 0. Matches the recorded values when the model,
    batch rows and numerics (dtype, eval mode) are those of the rollout.
    """
    L = trajectory.states.shape[-1]
    device = input_ids.device
    prompt = input_ids[:, :-L]  # (B, T - L)
    chosen = range(trajectory.states.shape[0]) if steps is None else steps
    rows = []
    for k in chosen:
        commit = trajectory.committed[k].to(device)  # (B, L)
        if not commit.any():
            rows.append(torch.zeros(input_ids.shape[0], dtype=torch.float32, device=device))
            continue
        step = evaluate_step(model, prompt, attention_mask, trajectory.states[k].to(device),
                             trajectory.tokens[k].to(device), commit, trajectory)
        rows.append(step.logp)
    return torch.stack(rows)


@torch.no_grad()
def slot_log_likelihood(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) ``Σ_i log p(x_i | x)`` over each row's slot tokens and its [EOS], all in view.

    The model is trained to keep right tokens and to flag wrong ones (identity and wrong-token
    corruption), so this one-pass score ranks whole candidate slots, e.g. the retrieved
    assertions an edit may start from. [PAD] and [MASK] positions do not count.
    """
    return slot_scores(model, input_ids, attention_mask)[0]


def slot_scores(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`slot_log_likelihood` (B,) and the critic logits of the slot (B, L), from one forward
    (differentiable: RL learns the start choice through it)."""
    special: SpecialIds = model.special
    L, _ = _check_inputs(model, input_ids, attention_mask, None)
    slot = input_ids[:, -L:]
    out = model(input_ids, attention_mask, last=L)
    logp = F.log_softmax(out.logits[:, -L:].float(), -1)
    token = logp.gather(-1, slot[..., None]).squeeze(-1)  # (B, L)
    counted = (slot != special.pad) & (slot != special.mask)
    return (token * counted).sum(-1), out.critic[:, -L:].float()


def edit_start(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: SamplerConfig,
    *,
    protected: torch.Tensor | None = None,
) -> torch.Tensor:
    """Diffusion as editing: the start state for :func:`diffusion_generate` from a retrieved slot.

    ``input_ids`` (B, T) hold a retrieved assertion in the slot (tokens, [EOS], [PAD]…). One
    critic pass; every non-protected slot position with ``σ(z) < cfg.edit_threshold`` becomes
    [MASK], [EOS] and [PAD] included. Returns new input_ids (B, T). Length can change both ways
    in the generator: a doubted [EOS] reopens the [PAD]s after it (they read as [MASK] there);
    committing an [EOS] earlier pads the rest (possible where every later token was doubted).
    """
    special: SpecialIds = model.special
    L, protected = _check_inputs(model, input_ids, attention_mask, protected)
    critic = model(input_ids, attention_mask, last=L).critic[:, -L:].float()  # (B, L)
    doubted = (torch.sigmoid(critic) < cfg.edit_threshold) & ~protected
    out = input_ids.clone()
    out[:, -L:] = torch.where(doubted, torch.full_like(input_ids[:, -L:], special.mask), input_ids[:, -L:])
    return out


def sample_tokens(logits: torch.Tensor, forbidden: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per position from softmax(logits (B, L, V)) with ``forbidden`` ids removed: (B, L).

    By the inverse CDF: one uniform per position against the cumulative probabilities. On CPU
    that is about 10x faster than ``torch.multinomial`` over B·L rows of a 4k vocabulary (16 vs
    170 ms at 32 x 48 x 4096), and the trainer draws twice per step. A draw that lands on a
    zero-probability id (a float rounding at the very end of the CDF) takes the most likely one.
    """
    x = logits.float().clone()
    x[..., forbidden] = float("-inf")
    return draw(torch.softmax(x, dim=-1), generator)


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs`` (..., V) (rows sum to 1 up to rounding), by the inverse CDF:
    one uniform per row against the cumulative probabilities. A draw that lands on a
    zero-probability id (a float rounding at the very end of the CDF) takes the most likely one."""
    cdf = probs.cumsum(-1)  # (..., V)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, device=generator.device).to(cdf.device) * cdf[..., -1:]
    picked = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1)  # (..., 1)
    zero = probs.gather(-1, picked) <= 0
    return torch.where(zero, probs.argmax(-1, keepdim=True), picked).squeeze(-1)
