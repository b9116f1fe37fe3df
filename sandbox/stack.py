"""A fixed stack depth for the code a child runs, whatever machinery forked it.

A candidate can measure how deep the Python stack is without reading a single frame: recurse
``n`` times and see whether ``RecursionError`` comes. The frames below a run's test function
differ between the paths that reach it — a module zygote or a mutant zygote forked from it, a
test run alone or a group that forks each candidate from one run of the prefix — so without
care the depth itself says whether a mutant is active, and an assertion that recurses just
deep enough would "kill" every mutant without touching the code under test.

:func:`call_at_depth` pads the stack with frames of its own so that the called function's
frame always sits at the same depth from the bottom of the stack. The execution child runs
the test function (prefix and candidate) at :data:`TEST_DEPTH`, a group runs its prefix there
and each candidate's code at the same depth, so recursion reaches the same limit everywhere.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Callable

# Frames below the test function's own: deeper than any path through the zygotes (about 40),
# far below the interpreter's recursion limit (1000), which a test still has nearly all of.
TEST_DEPTH = 96


class StackTooDeep(RuntimeError):
    """The caller is already deeper than the fixed depth it asked for."""


def depth() -> int:
    """Recursion levels in use where the caller stands: its frames and the C calls below them
    that count against the recursion limit (a class instantiated from Python, say), which a
    walk over the frames would miss.

    The interpreter says how deep it is when asked for a limit below that depth; where its
    message cannot be read, recursing until the limit tells the same (about 0.5 ms)."""
    try:
        sys.setrecursionlimit(1)
    except RecursionError as err:
        found = _DEPTH_IN_MESSAGE.search(str(err))
        if found:
            return int(found.group(1)) - 1  # counted in here: this frame
    else:  # pragma: no cover - no interpreter accepts a limit of 1 with frames on the stack
        raise StackTooDeep("the interpreter accepted a recursion limit of 1")
    return sys.getrecursionlimit() - _levels_left() - 1


_DEPTH_IN_MESSAGE = re.compile(r"at the recursion depth (\d+)")


def _levels_left() -> int:
    count = [0]

    def down() -> None:
        count[0] += 1
        down()

    try:
        down()
    except RecursionError:
        pass
    return count[0]


def call_at_depth(target: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with the frame that ``fn`` runs in (for ``exec``, the executed code's
    frame) at depth ``target``, counted as :func:`depth` counts.

    What a candidate can measure is how much recursion it has left, and ``exec`` (a builtin
    called through the C API) takes one level of it: code run by ``exec`` at ``target - 1``
    has the budget of a function at ``target``."""
    # Levels now: depth() of them, this frame the last; each _pad level adds one, and fn's
    # frame comes on top of the last.
    here = depth()
    pads = target - here - 2
    if pads < 0:
        raise StackTooDeep(f"the stack is already {here} levels deep, past the fixed depth {target}")
    return _pad(pads, fn, args)


def _pad(n: int, fn: Callable[..., Any], args: tuple) -> Any:
    if n:
        return _pad(n - 1, fn, args)
    return fn(*args)
