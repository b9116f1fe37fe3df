"""``DiffusionLM``: a bidirectional transformers encoder with a tied LM head and a critic head.

Notation: B batch, T sequence length, V vocabulary, H hidden size.

- ``logits`` (B, T, V): the denoiser's distribution over the token at each position; the LM
  head is tied to the input embeddings.
- ``critic`` (B, T): raw logits z; ``σ(z_i)`` is the probability that position i ends up
  correct. One meaning for the SFT error detector, the RL value readout and the remask policy.

A model saves as one directory, loadable offline: ``config.json`` (the backbone's
transformers config), ``model.safetensors`` (backbone and heads), the tokenizer files and
``trident_model.json`` (slot length, prompt budget, and the [MASK] logit bias that
``DynamicLogitBias`` learned, which samplers apply so that a predicted [MASK] means "not ready").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

from .errors import ModelError
from .tokenizer import SpecialIds, load_tokenizer, save_tokenizer

MODEL_FILE = "model.safetensors"
TRIDENT_FILE = "trident_model.json"
FORMAT_VERSION = 1


@dataclass
class BackboneConfig:
    """A ModernBERT-style encoder built from scratch (ignored when ``path`` is set)."""

    path: Path | None = field(default=None, metadata={"help": "local directory of a pretrained transformers encoder to start from (offline); null = build from the sizes below"})
    hidden_size: int = field(default=256, metadata={"help": "hidden size H"})
    num_hidden_layers: int = field(default=4, metadata={"help": "transformer layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "attention heads (divides hidden_size)"})
    intermediate_size: int = field(default=512, metadata={"help": "MLP width"})
    max_position_embeddings: int = field(default=1024, metadata={"help": "longest sequence the position encoding covers"})
    dropout: float = field(default=0.0, metadata={"help": "attention/MLP/embedding dropout (on CPU it costs ~60% more time per step)"})

    def __post_init__(self) -> None:
        if self.path is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"model.hidden_size={self.hidden_size} is not divisible by model.num_attention_heads="
                             f"{self.num_attention_heads}; pick sizes where it is")


@dataclass
class DiffusionOutput:
    logits: torch.Tensor  # (B, T, V)
    critic: torch.Tensor  # (B, T) raw critic logits z
    hidden: torch.Tensor  # (B, T, H) last hidden states
    layers: tuple[torch.Tensor, ...] | None = None  # (B, T, H) each: embeddings, then every layer's output


def modernbert_config(cfg: BackboneConfig, vocab_size: int, special: SpecialIds):
    """A small ModernBERT config: global attention every layer (slots are short), no biases."""
    from transformers import ModernBertConfig

    return ModernBertConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        layer_types=["full_attention"] * cfg.num_hidden_layers,
        attention_dropout=cfg.dropout,
        mlp_dropout=cfg.dropout,
        embedding_dropout=cfg.dropout,
        pad_token_id=special.pad,
        eos_token_id=special.eos,
        bos_token_id=special.slot,
        cls_token_id=special.slot,
        sep_token_id=special.eos,
        tie_word_embeddings=True,
    )


class DiffusionLM(nn.Module):
    """Backbone + tied ``lm_head`` + ``critic_head``.

    ``forward(input_ids (B, T), attention_mask (B, T) | None, last=None, layers=False) -> DiffusionOutput``;
    with ``last=n`` the outputs cover only the last n positions: (B, n, V), (B, n), (B, n, H).
    With ``layers=True`` the output also holds every layer's hidden states (index 0: the
    embeddings, k: the output of layer k; the last is ``hidden``), cut to ``last`` alike: what
    intermediate-layer distillation reads.
    """

    def __init__(self, backbone: nn.Module, tokenizer: PreTrainedTokenizerFast, *, slot_len: int, max_prompt: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.special = SpecialIds.from_tokenizer(tokenizer)
        self.slot_len = slot_len
        self.max_prompt = max_prompt
        # Learned by DynamicLogitBias during SFT; samplers add it to the [MASK] logit.
        self.mask_logit_bias = 0.0
        hidden = backbone.config.hidden_size
        self.head_norm = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, backbone.config.vocab_size, bias=True)
        self.lm_head.weight = backbone.get_input_embeddings().weight  # tied
        self.critic_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.lm_head.bias)
        nn.init.normal_(self.critic_head.weight, std=0.02)
        nn.init.zeros_(self.critic_head.bias)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, cfg: BackboneConfig, tokenizer: PreTrainedTokenizerFast, *, slot_len: int, max_prompt: int, seed: int = 0) -> DiffusionLM:
        """A fresh model from ``cfg`` (or from the local pretrained encoder at ``cfg.path``)."""
        special = SpecialIds.from_tokenizer(tokenizer)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if cfg.path is not None:
                backbone = _pretrained_backbone(cfg.path)
                backbone.resize_token_embeddings(len(tokenizer))
            else:
                config = modernbert_config(cfg, len(tokenizer), special)
                config._attn_implementation = "sdpa"
                backbone = AutoModel.from_config(config)
            if slot_len + max_prompt > backbone.config.max_position_embeddings:
                raise ModelError(f"slot_len + max_prompt = {slot_len + max_prompt} exceeds the backbone's "
                                 f"max_position_embeddings={backbone.config.max_position_embeddings}; lower them")
            return cls(backbone, tokenizer, slot_len=slot_len, max_prompt=max_prompt)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                last: int | None = None, layers: bool = False) -> DiffusionOutput:
        """Heads on every position, or only on the ``last`` ones (the slot): the LM head is a
        third of the compute at a 4k vocabulary, and context positions never need it."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=layers)
        hidden = out.last_hidden_state  # (B, T, H)
        states = tuple(out.hidden_states) if layers else None
        if last is not None:
            hidden = hidden[:, -last:]  # (B, last, H)
            states = tuple(h[:, -last:] for h in states) if states is not None else None
        normed = self.head_norm(hidden)
        return DiffusionOutput(
            logits=self.lm_head(normed),  # (B, T, V)
            critic=self.critic_head(normed).squeeze(-1),  # (B, T)
            hidden=hidden,
            layers=states,
        )

    @property
    def num_layers(self) -> int:
        return int(self.backbone.config.num_hidden_layers)

    @property
    def device(self) -> torch.device:
        return self.critic_head.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | Path) -> None:
        """Write the model, its tokenizer and Trident settings to ``path`` (offline-loadable)."""
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.config.save_pretrained(str(path))
        save_model(self, str(path / MODEL_FILE))
        save_tokenizer(self.tokenizer, path)
        meta = {"format": "trident-model", "version": FORMAT_VERSION, "slot_len": self.slot_len,
                "max_prompt": self.max_prompt, "mask_logit_bias": self.mask_logit_bias,
                "parameters": self.num_parameters()}
        (path / TRIDENT_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> DiffusionLM:
        """Read a directory written by :meth:`save`; errors name what is missing and the fix."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        path = Path(path)
        meta_file = path / TRIDENT_FILE
        if not meta_file.is_file():
            raise ModelError(f"'{path}' is not a Trident model directory ({TRIDENT_FILE} missing); "
                             f"give the directory `trident sft` wrote (its final/ or a checkpoint's model/)")
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"'{meta_file}' is corrupt ({exc}); re-save the model or use another checkpoint") from None
        if meta.get("format") != "trident-model" or meta.get("version") != FORMAT_VERSION:
            raise ModelError(f"'{meta_file}' holds format {meta.get('format')!r} version {meta.get('version')!r}; "
                             f"this Trident reads trident-model version {FORMAT_VERSION}")
        tokenizer = load_tokenizer(path)
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        config._attn_implementation = "sdpa"
        backbone = AutoModel.from_config(config)
        model = cls(backbone, tokenizer, slot_len=meta["slot_len"], max_prompt=meta["max_prompt"])
        try:
            load_model(model, str(path / MODEL_FILE), device=str(device))
        except (FileNotFoundError, OSError, RuntimeError, SafetensorError) as exc:
            raise ModelError(f"cannot read weights from '{path / MODEL_FILE}' ({str(exc).splitlines()[0]}); "
                             f"the checkpoint is incomplete or corrupt: use another one") from None
        model.mask_logit_bias = float(meta["mask_logit_bias"])
        return model.to(device)


def _pretrained_backbone(path: Path) -> nn.Module:
    if not (Path(path) / "config.json").is_file():
        raise ModelError(f"model.backbone.path '{path}' holds no transformers model (config.json missing); "
                         f"give a local directory saved with save_pretrained, or null to build from sizes")
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    if getattr(model.config, "is_decoder", False) or getattr(model.config, "is_causal", False):
        raise ModelError(f"model.backbone.path '{path}' is a causal decoder; Trident needs a bidirectional encoder")
    return model
