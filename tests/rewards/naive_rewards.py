"""Rewards a careless author might write, loaded by path in the tests ('naive_rewards:NAME')."""

from __future__ import annotations


def exit_code(prompts, completions, verdicts, **kwargs):
    """Pays 1.0 unless the run ended in an error, a crash or a timeout: an exit-code check.
    It pays a candidate the static gate refused, and one that fails, as if it had passed."""
    return [0.0 if v.status in ("error", "crashed", "timeout") else 1.0 for v in verdicts]


def shorter_than(prompts, completions, max_chars=40, **kwargs):
    """1.0 for a completion of at most ``max_chars`` characters (a bound keyword), else 0.0."""
    return [float(len(c) <= max_chars) for c in completions]


def broken(prompts, completions, **kwargs):
    """Raises on one candidate: a bug a reward author should hear about, not a silent 0."""
    return [1.0 / len(c.split("==")[1].strip()) for c in completions]
