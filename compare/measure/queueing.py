"""Queueing theory for the server scenario's checks: M/D/c, Poisson arrivals at rate `lam` to `c` servers that
each take exactly `d` seconds per request, served first come first served. Pure numpy, no simulation.

What it is: the exact waiting-time distribution of M/D/c, computed numerically, and from it the latency
percentile and the peak rate under a latency bound that the server scenario should find for such a system.
What it is not: a model of batching (bulk service) or of service times that vary; those are not checked
against theory.

Method (stated so it can be checked):
- The number in system N, sampled every d seconds, is a Markov chain: every request in service at t has left
  by t + d, every one waiting beyond the first c has not, and each arrival in (t, t + d] is still there, so
  N(t + d) = max(N(t) - c, 0) + A with A ~ Poisson(lam d). Its stationary law is N's time-stationary law
  (the recursion holds from any t), solved here on a truncated state space (the mass cut off is checked).
- Crommelin (1932), in the form of Franx (2001, "A simple solution for the M/D/c waiting time
  distribution", Operations Research Letters 29:221-229): for (k-1) d <= x < k d,
      P(W <= x) = sum_{j=0}^{kc-1} P(N <= kc + c - 1 - j) * Poisson(lam (k d - x)) pmf at j
  (Franx writes it with the queue-length law, P(N <= n + c)); by PASTA an arrival sees N's stationary law.
- Latency = W + d. The mean wait of M/D/1 (Pollaczek-Khinchine, rho d / (2 (1 - rho))) checks the method.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import poisson

TRUNCATION_MASS = 1e-12  # the stationary law is solved on states 0..K; K grows until P(N = K) is below this


def number_in_system(lam: float, d: float, c: int) -> np.ndarray:
    """Stationary P(N = n), n = 0..K, of M/D/c (requires lam d < c)."""
    a = lam * d
    if not 0 < a < c:
        raise ValueError(f"M/D/{c} is stable only for 0 < lam d < {c}; got lam d = {a:.4g}")
    k = max(64, int(8 * c + 40 * a / (c - a)))
    while True:
        p = _solve_chain(a, c, k)
        if p[-1] < TRUNCATION_MASS:
            return p
        k *= 2


def _solve_chain(a: float, c: int, k: int) -> np.ndarray:
    arrivals = poisson.pmf(np.arange(k + 1), a)
    trans = np.zeros((k + 1, k + 1))
    for i in range(k + 1):
        base = max(i - c, 0)
        trans[i, base:] = arrivals[: k + 1 - base]
        trans[i, k] += 1.0 - trans[i].sum()  # arrivals past the truncation stay in the last state
    # p (T - I) = 0 with sum(p) = 1: replace one equation by the normalisation
    m = (trans - np.eye(k + 1)).T
    m[-1, :] = 1.0
    rhs = np.zeros(k + 1)
    rhs[-1] = 1.0
    p = np.linalg.solve(m, rhs)
    return np.clip(p, 0.0, None)


def wait_cdf(x: float, lam: float, d: float, c: int, law: np.ndarray | None = None) -> float:
    """P(W <= x) for the waiting time (before service) of M/D/c, FIFO."""
    if x < 0:
        return 0.0
    law = number_in_system(lam, d, c) if law is None else law
    cum = np.cumsum(law)
    k = int(math.floor(x / d)) + 1  # (k-1) d <= x < k d
    j = np.arange(k * c)
    idx = k * c + c - 1 - j
    q = np.where(idx < len(cum), cum[np.minimum(idx, len(cum) - 1)], 1.0)
    return float(np.sum(q * poisson.pmf(j, lam * (k * d - x))))


def wait_quantile(q: float, lam: float, d: float, c: int) -> float:
    """Smallest x with P(W <= x) >= q (bisection to 1e-9 d)."""
    law = number_in_system(lam, d, c)
    if wait_cdf(0.0, lam, d, c, law) >= q:
        return 0.0
    hi = d
    while wait_cdf(hi, lam, d, c, law) < q:
        hi *= 2
    lo = 0.0
    while hi - lo > 1e-9 * d:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if wait_cdf(mid, lam, d, c, law) >= q else (mid, hi)
    return hi


def mean_wait(lam: float, d: float, c: int) -> float:
    """E[W] integrated from the distribution (the check on the method against Pollaczek-Khinchine)."""
    law = number_in_system(lam, d, c)
    x_max = d
    while 1.0 - wait_cdf(x_max, lam, d, c, law) > 1e-10:
        x_max *= 2
    xs = np.linspace(0.0, x_max, 4001)
    tail = np.array([1.0 - wait_cdf(x, lam, d, c, law) for x in xs])
    return float(np.sum((tail[1:] + tail[:-1]) / 2 * np.diff(xs)))


def md1_mean_wait(lam: float, d: float) -> float:
    """Pollaczek-Khinchine for deterministic service: rho d / (2 (1 - rho))."""
    rho = lam * d
    return rho * d / (2 * (1 - rho))


def latency_quantile(q: float, lam: float, d: float, c: int) -> float:
    """The q-quantile of latency (wait + service) of M/D/c."""
    return wait_quantile(q, lam, d, c) + d


def peak_rate(bound: float, d: float, c: int, q: float = 0.99, rel: float = 1e-4) -> float:
    """The highest arrival rate whose q-quantile latency stays within `bound` (0 if even a lone request
    exceeds it): latency quantiles grow with the rate, so bisection on the rate, below capacity c / d."""
    if bound < d:
        return 0.0
    lo, hi = 0.0, c / d
    while hi - lo > rel * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid > 0 and latency_quantile(q, mid, d, c) <= bound else (lo, mid)
    return lo
