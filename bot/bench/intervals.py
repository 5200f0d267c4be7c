"""Exact (Clopper-Pearson) binomial confidence intervals for the benchmark's rates.

With a few dozen models per class a rate alone says little: 10/10 recall has a 95% lower bound
of 69%. Every rate the benchmark reports carries its interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return math.fsum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def _solve(f, target: float) -> float:
    """The p in [0, 1] where the decreasing function f(p) crosses target (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class Rate:
    hits: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    def __str__(self) -> str:
        if not self.n:
            return "-"
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


def clopper_pearson(hits: int, n: int, *, confidence: float = 0.95) -> Rate:
    if not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n, got {hits}/{n}")
    if n == 0:
        return Rate(0, 0, 0.0, 1.0)
    alpha = 1 - confidence
    # lower: the p at which `hits` or more has probability alpha/2 (P(X <= hits-1) = 1 - alpha/2);
    # upper: the p at which `hits` or fewer has probability alpha/2
    low = 0.0 if hits == 0 else _solve(lambda p: _binom_cdf(hits - 1, n, p), 1 - alpha / 2)
    high = 1.0 if hits == n else _solve(lambda p: _binom_cdf(hits, n, p), alpha / 2)
    return Rate(hits, n, low, high)
