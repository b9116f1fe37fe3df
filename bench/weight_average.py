"""Average the weights of models trained from one SFT model (a "model soup"): RL runs with other
seeds, or checkpoints of one run. Each source is a model directory (an SFT or RL ``final/``) or an
RL checkpoint folder (``RUN/checkpoints/iter_NNNNNN``, whose ``learner.pt`` holds the policy);
the architecture, tokenizer and settings come from ``--base`` (the SFT model the runs started
from). The result is an ordinary model directory that ``rl.evaluate`` and ``trident eval`` read.

    python bench/weight_average.py --out runs/soup runs/rlA/final runs/rlB/final runs/rlC/checkpoints/iter_000019
    python -m rl.evaluate --model sft=runs/default/sft/final --model soup=runs/soup

Measured use (docs/rl.md, "Choosing the checkpoint, on the valid split"): the average of three
seeds' last checkpoints separates what the seeds learned in common from the drift of each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pretrain.errors import ModelError
from pretrain.model import TRIDENT_FILE, DiffusionLM
from rl.driver import LEARNER_FILE


def source_state(path: Path) -> dict[str, torch.Tensor]:
    """The policy weights of one source; an error names the source and what it should be."""
    if (path / TRIDENT_FILE).is_file():
        return DiffusionLM.load(path).state_dict()
    if (path / LEARNER_FILE).is_file():
        return torch.load(path / LEARNER_FILE, map_location="cpu", weights_only=False)["model"]
    raise SystemExit(f"weight_average: '{path}' is neither a model directory ({TRIDENT_FILE}) nor an RL checkpoint "
                     f"folder ({LEARNER_FILE}); give a final/ or a RUN/checkpoints/iter_NNNNNN folder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", type=Path, help="model directories or RL checkpoint folders")
    parser.add_argument("--base", type=Path, default=Path("runs/default/sft/final"),
                        help="the SFT model the sources were trained from (architecture, tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"weight_average: '{args.out}' exists; give another --out or remove it")
    try:
        model = DiffusionLM.load(args.base)
    except ModelError as exc:
        sys.exit(f"weight_average: --base: {exc}")
    target = model.state_dict()
    total = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in target.items()}
    for path in args.sources:
        state = source_state(path)
        if state.keys() != target.keys() or any(state[k].shape != v.shape for k, v in target.items()):
            sys.exit(f"weight_average: '{path}' has other weights than --base '{args.base}' (another architecture); "
                     f"average only models trained from that base")
        for k in total:
            total[k] += state[k].float()
    model.load_state_dict({k: (v / len(args.sources)).to(target[k].dtype) for k, v in total.items()})
    model.save(args.out)
    print(f"weight_average: {len(args.sources)} models averaged into {args.out}")


if __name__ == "__main__":
    main()
