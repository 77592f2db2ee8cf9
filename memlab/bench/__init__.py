"""Benchmarks: ``python -m memlab.bench {llm,search,eval}`` print tables of figures."""

from __future__ import annotations

import argparse


def count(text: str) -> int:
    """An argparse type: a whole number >= 1 (``--repeat 0`` is refused before any work,
    not answered with an empty table or a traceback)."""
    return _bounded(text, 1)


def non_negative(text: str) -> int:
    """An argparse type: a whole number >= 0 (``--threads 0``: as many as are free)."""
    return _bounded(text, 0)


def fractions(text: str) -> list[float]:
    """An argparse type: comma-separated fractions in (0, 1], e.g. ``0.5,0.1``."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected fractions in (0, 1] such as 0.5,0.1, "
                                         f"got {text!r}")
    return values


def _bounded(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
    return value
