"""One metric logger for training jobs: JSON Lines always, TensorBoard when it is installed.

Names are slash-namespaced (``train/loss``, ``loss/critic``, ``perf/tokens_per_s``). Each
``log`` call writes one JSON line ``{"step": N, "time": seconds since start, name: value, …}``
to ``metrics.jsonl`` and the same scalars to TensorBoard event files in the same folder.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Mapping


class MetricLogger:
    def __init__(self, folder: str | Path, *, tensorboard: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = open(self.folder / "metrics.jsonl", "a", encoding="utf-8")
        self._start = time.monotonic()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: JSONL alone still records everything
                pass
            else:
                self._tb = SummaryWriter(str(self.folder))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {"step": step, "time": round(time.monotonic() - self._start, 3)}
        for name, value in metrics.items():
            value = float(value)
            row[name] = value if math.isfinite(value) else None
            if self._tb is not None and math.isfinite(value):
                self._tb.add_scalar(name, value, step)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file (for reports and tests)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
