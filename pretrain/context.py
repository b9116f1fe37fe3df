"""What the prompt shows of a task's code: focal source without decorators and docstrings,
and the task's observations as comment lines (see :mod:`pretrain.data` for the layout)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from sandbox.tasks import Task

__all__ = ["MAX_OBSERVATION_CHARS", "observation_lines", "strip_focal"]

_DECORATOR = re.compile(r"^\s*@")
_DEF = re.compile(r"^\s*(async\s+)?(def|class)\s")
_DOC_OPEN = re.compile(r"""^\s*[rRuU]?(\"\"\"|\'\'\')""")
MAX_OBSERVATION_CHARS = 80


def strip_focal(text: str) -> str:
    """Focal source without decorator lines and without the docstring that opens each function
    or class. Works line by line, so a text cut at a token budget (which may not parse) is
    stripped too."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    in_signature = False
    while i < len(lines):
        line = lines[i]
        if not in_signature and _DECORATOR.match(line):
            i += 1
            continue
        if _DEF.match(line) or in_signature:
            out.append(line)
            in_signature = not line.rstrip().endswith(":")
            i += 1
            if in_signature:
                continue
            j = i
            while j < len(lines) and not lines[j].strip():
                j += 1
            opened = _DOC_OPEN.match(lines[j]) if j < len(lines) else None
            if opened:
                quote = opened.group(1)
                rest = lines[j][opened.end():]
                k = j
                while quote not in rest and k + 1 < len(lines):
                    k += 1
                    rest = lines[k]
                i = k + 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def observation_lines(task: Task) -> list[str]:
    """The task's observations as comment lines, in the order the prefix binds the names:
    ``# x == VALUE`` for a literal or float, ``# len(x) == N`` for a collection, ``# x: Type`` for
    another object; unobservable names and raising ones are left out. Each line is cut to
    :data:`MAX_OBSERVATION_CHARS` characters."""
    observations: Mapping[str, Mapping[str, Any]] = task.observations or {}
    out = []
    for name, o in observations.items():
        kind, text = o.get("kind"), str(o.get("text", ""))
        if kind in ("literal", "approx"):
            line = f"# {name} == {text}"
        elif kind == "len":
            line = f"# len({name}) == {text}"
        elif kind == "object":
            line = f"# {name}: {text.rsplit('.', 1)[-1]}"
        else:
            continue
        out.append(line if len(line) <= MAX_OBSERVATION_CHARS else line[:MAX_OBSERVATION_CHARS - 1] + "…")
    return out
