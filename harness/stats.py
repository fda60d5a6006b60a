"""Statistics for leaderboards: unbiased pass@k, task-clustered Wilson intervals, paired comparisons."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


INTERVAL_METHOD = ("Wilson score interval on the effective sample size n_eff = trials / design effect "
                   "(attempts clustered by task; n_eff = tasks when every attempt agrees)")


def wilson_interval(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion `p` observed on `n` (possibly effective, fractional) trials."""
    if n <= 0:
        return float("nan"), float("nan")
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (0.0 if p <= 0 else max(0.0, centre - half)), (1.0 if p >= 1 else min(1.0, centre + half))


def effective_sample_size(per_task: Sequence[Sequence[bool]]) -> float:
    """Trials / design effect: how many independent trials the attempts are worth, given how alike the attempts
    of one task are. Independent attempts give every trial; identical attempts give one per task."""
    means = [sum(a) / len(a) for a in per_task if len(a)]
    tasks, trials = len(means), sum(len(a) for a in per_task)
    if tasks == 0:
        return 0.0
    if trials == tasks:
        return float(trials)  # one attempt per task: nothing to cluster
    mean = sum(means) / tasks
    between = sum((m - mean) ** 2 for m in means) / tasks  # variance of a task mean; of p: between / tasks
    if mean in (0.0, 1.0):
        return float(tasks)  # every attempt agrees: nothing tells the correlation, assume attempts repeat each other
    if between == 0:
        return float(trials)  # every task at the same rate: attempts vary within tasks, not between them
    return min(float(trials), max(float(tasks), tasks * mean * (1 - mean) / between))


def clustered_interval(per_task: Sequence[Sequence[bool]]) -> tuple[float, float, float]:
    """Mean success rate over tasks (each task the mean of its attempts) with its 95% interval (INTERVAL_METHOD).

    The Wilson interval holds at small n and at 0% and 100% (3 of 3 resolved: 43.9% to 100%), where a normal
    approximation collapses to a point.
    """
    means = [sum(a) / len(a) for a in per_task if len(a)]
    if not means:
        return float("nan"), float("nan"), float("nan")
    mean = sum(means) / len(means)
    low, high = wilson_interval(mean, effective_sample_size(per_task))
    return mean, low, high


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (tasks one run solved and the other not)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(a_only, b_only) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], samples: int = 10_000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over paired tasks, with a 95% percentile interval from resampling tasks."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_bootstrap needs two non-empty sequences of the same length")
    diffs = [y - x for x, y in zip(a, b)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    return sum(diffs) / n, means[int(0.025 * samples)], means[int(0.975 * samples) - 1]
