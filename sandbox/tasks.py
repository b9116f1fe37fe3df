"""The task schema: one assertion slot in a real test function of a real library.

A task file is JSON Lines. The first line is a header ``{"format": "trident-tasks",
"version": N, ...}``; every other line is one :class:`Task`. Loading a file written with
another version, or a line that lacks a field, is a :class:`TaskFormatError` that names the
file, the line and what to do.

Version 2 adds ``observations``: what each name the prefix binds holds at the slot, on the
unmutated library (:mod:`sandbox.observe`). Version 1 files still load; their tasks have
``observations`` None, and what needs them observes them when it runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

FORMAT = "trident-tasks"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
SPLITS = ("train", "valid", "test")


class TaskFormatError(ValueError):
    """A task file or record that this version of Trident cannot read."""


@dataclass(frozen=True)
class Mutant:
    """One AST mutation of a library function, stored as an exact source edit.

    ``span`` is ``[start_line, start_col, end_line, end_col]`` in the library file (1-based
    lines, 0-based UTF-8 byte columns, as :mod:`ast` reports them); applying the mutant replaces
    the bytes of that span, which must equal ``original``, with ``replacement``.
    """

    id: str
    file: str  # path relative to the package's directory, '/'-separated
    qualname: str  # the function (or method) that the edit lies in
    operator: str
    span: tuple[int, int, int, int]
    original: str
    replacement: str

    @property
    def description(self) -> str:
        return f"{self.operator} in {self.qualname} (line {self.span[0]}): {self.original!r} -> {self.replacement!r}"


@dataclass(frozen=True)
class Task:
    """One assertion slot: run ``prefix`` then an assertion where ``target`` stood.

    Execution re-reads the test function from the installed library (see
    :mod:`sandbox.execution`), so ``prefix`` and ``setup`` are the model's view of the code and a
    check that the installed test file still matches.
    """

    id: str
    package: str
    package_version: str
    test_module: str  # dotted module that pytest collects the test from
    test_class: str | None  # class inside test_module, or None for a plain function
    test_name: str
    slot: int  # index in the test function's body of the statement the target replaces
    setup: str  # module-level imports and helpers of the test file (source)
    prefix: str  # statements of the test body before the target, dedented
    target: str  # the original assert statement
    focal: str  # source of the library functions the test calls, cut to a budget
    focal_functions: tuple[str, ...]  # "file::qualname" of those functions
    mutants: tuple[Mutant, ...]  # each killed by the target
    split: str  # train | valid | test
    # name the prefix binds -> its observation (sandbox.observable.Observation.to_dict()); None: not observed
    observations: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "task") -> Task:
        if not isinstance(data, dict):
            raise TaskFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data and n != "observations"]
        extra = sorted(set(data) - set(names))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing field(s) {', '.join(missing)}")
            if extra:
                parts.append(f"unknown field(s) {', '.join(extra)}")
            raise TaskFormatError(
                f"{where}: {'; '.join(parts)} for task schema v{SCHEMA_VERSION}; "
                "re-mine the file with `trident mine` from this version"
            )
        try:
            mutants = tuple(
                Mutant(**{**m, "span": tuple(m["span"])}) for m in data["mutants"]
            )
        except (TypeError, KeyError) as err:
            raise TaskFormatError(f"{where}: malformed mutant record ({err})") from None
        if data["split"] not in SPLITS:
            raise TaskFormatError(f"{where}: split {data['split']!r} is not one of {', '.join(SPLITS)}")
        return cls(**{**data, "mutants": mutants, "focal_functions": tuple(data["focal_functions"])})


def header(**info: Any) -> dict[str, Any]:
    return {"format": FORMAT, "version": SCHEMA_VERSION, **info}


def write_tasks(path: str | os.PathLike, tasks: Iterable[Task], **info: Any) -> int:
    """Write tasks atomically (temp file + rename); returns how many were written.

    Keys are sorted and separators fixed, so the same tasks give the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header(**info), sort_keys=True) + "\n")
        for task in tasks:
            fh.write(json.dumps(task.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TaskFormatError(f"task file '{path}' not found; create it with `trident mine --out {path}`")
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    return _check_header(path, first)


def _check_header(path: Path, line: str) -> dict[str, Any]:
    try:
        head = json.loads(line)
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise TaskFormatError(
            f"'{path}' is not a Trident task file (its first line must be the "
            f'{{"format": "{FORMAT}", ...}} header); create one with `trident mine`'
        )
    if head.get("version") not in READABLE_VERSIONS:
        raise TaskFormatError(
            f"'{path}' uses task schema v{head.get('version')}, this Trident reads v{SCHEMA_VERSION}; "
            "re-mine it with `trident mine`"
        )
    return head


def iter_tasks(path: str | os.PathLike) -> Iterator[Task]:
    path = Path(path)
    read_header(path)
    with open(path, encoding="utf-8") as fh:
        fh.readline()
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskFormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            yield Task.from_dict(data, where=f"{path}:{lineno}")


def load_tasks(path: str | os.PathLike, split: str | None = None) -> list[Task]:
    if split is not None and split not in SPLITS:
        raise TaskFormatError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    return [t for t in iter_tasks(path) if split is None or t.split == split]


def read_rows(path: str | os.PathLike, keys: tuple[str, ...], what: str) -> list[dict[str, Any]]:
    """The rows of a JSONL input file (candidates to score, expressions to observe), each an
    object with a string under every one of ``keys``; one clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise TaskFormatError(f"{what} '{path}' not found")
    rows = []
    shape = "{" + ", ".join(f'"{k}": str' for k in keys) + "}"
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskFormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in keys):
                raise TaskFormatError(f"{path}:{lineno}: expected {shape}")
            rows.append(row)
    return rows
