"""Trident: train models to write unit-test assertions, then improve them with RL from execution."""

__version__ = "0.1.0"
