"""Interleaved measurement for benches that compare contenders: each round runs every contender once, the order
reversed every other round (ABBA...), so load that comes and goes slows them alike; ratios are taken per round and
reported as min/median/max over the rounds."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any


def interleaved(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[Any]]:
    """Run each contender once per round, alternating the order; returns each contender's results by round."""
    results: dict[str, list[Any]] = {name: [] for name in contenders}
    names = list(contenders)
    for number in range(rounds):
        for name in names if number % 2 == 0 else reversed(names):
            results[name].append(contenders[name]())
    return results


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)


def per_round(numerator: list[float], denominator: list[float]) -> list[float]:
    """The ratio of two contenders' figures, round by round."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def describe(values: list[float], fmt: str = ".2f", unit: str = "") -> str:
    """'min X / median Y / max Z' over the rounds."""
    low, mid, high = spread(values)
    return f"min {low:{fmt}}{unit} / median {mid:{fmt}}{unit} / max {high:{fmt}}{unit}"
