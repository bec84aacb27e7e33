"""Statistics over runs: mean ± sample std, the interquartile mean (IQM) and bootstrap CIs.

One spread convention for every table pglab writes (the end-of-sweep table and the
report's): the sample standard deviation (ddof 1) over seeds, see :func:`mean_std`.
scipy is imported on first use, so that the end-of-sweep table loads only numpy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
SEED = 0

STD_NOTE = "mean ± sample std (ddof 1) over seeds (± — for a single seed, which has no sample std)"


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1) of the non-NaN ``values``.

    A single value has no sample std: NaN, which the tables print as "—" (``± 0.0``
    would claim seeds that agree); no value gives ``(NaN, NaN)``.
    """
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return math.nan, math.nan
    return float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1 else math.nan


def iqm(x: np.ndarray, axis: int = -1) -> Any:
    """Interquartile mean: the mean of the middle 50 % (25 % trimmed from each end)."""
    from scipy import stats

    return stats.trim_mean(x, 0.25, axis=axis)


def iqm_ci(x: np.ndarray, seed: int = SEED) -> tuple[float, float]:
    """95 % percentile-bootstrap CI of the IQM of one sample (NaN with fewer than 2 values)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        value = float(x[0]) if len(x) and np.all(x == x[0]) and len(x) >= 2 else math.nan
        return value, value
    result = stats.bootstrap(
        (x,),
        iqm,
        confidence_level=CONFIDENCE,
        n_resamples=N_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def stratified_iqm_ci(samples: Sequence[np.ndarray], seed: int = SEED) -> tuple[float, float, float]:
    """IQM over all runs of several tasks and its stratified-bootstrap 95 % CI.

    Each task's runs are resampled on their own (with replacement, as many as it has;
    a task with one run resamples to itself), then the IQM is taken over all of them
    together — the stratified bootstrap of Agarwal et al. (2021), as in rliable.
    """
    samples = [np.asarray(s, dtype=float) for s in samples if len(s)]
    point = float(iqm(np.concatenate(samples)))
    if sum(len(s) for s in samples) < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    resampled = [s[rng.integers(0, len(s), size=(N_RESAMPLES, len(s)))] for s in samples]  # [B, n_task] each
    stats_ = iqm(np.concatenate(resampled, axis=1), axis=1)  # [B]
    low, high = np.percentile(stats_, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return point, float(low), float(high)


def paired_difference_ci(before: np.ndarray, after: np.ndarray, seed: int = SEED) -> tuple[float, float, float]:
    """Mean of ``after - before`` over paired items (the same prompts scored twice) and its
    95 % percentile-bootstrap CI, resampling the items (:data:`N_RESAMPLES` times).

    Raises:
        ValueError: the two arrays do not pair up.
    """
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.shape != after.shape or before.ndim != 1 or not len(before):
        raise ValueError(f"paired values: {before.shape} before, {after.shape} after")
    diff = after - before
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(N_RESAMPLES, len(diff)))
    means = diff[idx].mean(axis=1)
    alpha = (1 - CONFIDENCE) / 2 * 100
    return float(diff.mean()), float(np.percentile(means, alpha)), float(np.percentile(means, 100 - alpha))


def bootstrap_band(values: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """95 % percentile-bootstrap band of the mean over runs: ``values [runs, points]`` (NaN = no data)."""
    runs = values.shape[0]
    if runs < 2:
        return values[0], values[0]
    idx = rng.integers(0, runs, size=(n, runs))
    with warnings.catch_warnings():  # beyond the shortest runs some resamples hold no data
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values[idx], axis=1)  # [n, points]
        return np.nanpercentile(means, 2.5, axis=0), np.nanpercentile(means, 97.5, axis=0)


def profile_band(
    per_env: Sequence[np.ndarray], taus: np.ndarray, rng: np.random.Generator, n: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A performance profile (the fraction of runs with score > τ, averaged over envs) and its
    95 % stratified-bootstrap band (each env's runs resampled on their own)."""
    profile = np.mean([(x[:, None] > taus).mean(axis=0) for x in per_env], axis=0)
    boots = []
    for _ in range(n):
        boots.append(np.mean([(x[rng.integers(0, len(x), len(x))][:, None] > taus).mean(axis=0) for x in per_env], 0))
    low, high = np.percentile(boots, [2.5, 97.5], axis=0)
    return profile, low, high
