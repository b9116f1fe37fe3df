"""Shared fixtures: real networkx test modules, mined once per session where a test needs tasks."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
