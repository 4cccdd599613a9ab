"""Confidence intervals over evaluation items (scenes): percentile bootstrap, plain and paired.

A metric averaged over held-out scenes is reported with an interval that says how much the mean
would move with another draw of scenes. Both functions resample the *items* (scenes) with
replacement ``n_boot`` times and take the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
the resampled means (the percentile bootstrap). They are deterministic for a given ``seed``.

Items that are None or NaN (a metric that had nothing to score on that scene) are dropped; ``n``
in the result is the number of items that remain. With fewer than two items, or items that are all
equal, there is nothing to resample: ``lo == hi == mean``. With none, every number is None.

Only numpy is needed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import MVS2VError

__all__ = ["bootstrap_ci", "paired_bootstrap_ci", "ratio_bootstrap_ci"]


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        raise MVS2VError(f"bootstrap: item {value!r} is not a number (give numbers, None or NaN)") from None


def _clean(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """float64 ``[n]`` of the items that are numbers (None / NaN dropped)."""
    kept = [float(v) for v in np.asarray(values, dtype=object).ravel() if not _is_missing(v)]
    out = np.asarray(kept, dtype=np.float64)
    if not np.isfinite(out).all():
        raise MVS2VError("bootstrap: items must be finite numbers (infinite values have no mean to bootstrap)")
    return out


def _check_settings(n_boot: int, level: float) -> None:
    if int(n_boot) < 1:
        raise MVS2VError(f"bootstrap: n_boot must be >= 1, got {n_boot}")
    if not 0.0 < float(level) < 1.0:
        raise MVS2VError(f"bootstrap: level must be between 0 and 1 (e.g. 0.95), got {level}")


def _interval(x: np.ndarray, n_boot: int, level: float, seed: int) -> dict[str, Any]:
    n = int(x.size)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(x.mean())
    if n < 2 or float(np.ptp(x)) == 0.0:  # nothing varies: the interval is the point
        return {"mean": mean, "lo": mean, "hi": mean, "n": n}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
    alpha = (1.0 - float(level)) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return {"mean": mean, "lo": float(lo), "hi": float(hi), "n": n}


def bootstrap_ci(values: Sequence[Any] | np.ndarray, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> dict[str, Any]:
    """Mean of ``values`` (one number per item) and its percentile-bootstrap interval.

    Args:
        values: ``[n]`` numbers; None / NaN items are dropped.
        n_boot: bootstrap resamples.
        level: interval coverage (0.95: the 2.5% and 97.5% quantiles of the resampled means).
        seed: seed of the resampling (same seed, same interval).

    Returns:
        ``{"mean", "lo", "hi", "n"}`` (None numbers when no item is left).
    """
    _check_settings(n_boot, level)
    return _interval(_clean(values), n_boot, level, seed)


def _pairs(a: Sequence[Any] | Mapping[Any, Any], b: Sequence[Any] | Mapping[Any, Any]) -> np.ndarray:
    """``a - b`` over the items present (not None / NaN) in both; mappings pair by key."""
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise MVS2VError("paired bootstrap: give two mappings (item id -> value) or two sequences, not one of each")
    if isinstance(a, Mapping):
        keys = [k for k in a if k in b]
        a_items, b_items = [a[k] for k in keys], [b[k] for k in keys]
    else:
        a_items, b_items = list(np.asarray(a, dtype=object).ravel()), list(np.asarray(b, dtype=object).ravel())
        if len(a_items) != len(b_items):
            raise MVS2VError(f"paired bootstrap: the two sequences pair item by item but have {len(a_items)} and "
                             f"{len(b_items)} items; give one value per item to both (None where missing)")
    diffs = [float(x) - float(y) for x, y in zip(a_items, b_items) if not _is_missing(x) and not _is_missing(y)]
    return _clean(diffs)


def paired_bootstrap_ci(a: Sequence[Any] | Mapping[Any, Any], b: Sequence[Any] | Mapping[Any, Any],
                        n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Mean of the paired differences ``a_i - b_i`` and its percentile-bootstrap interval.

    Pairing removes what two arms share on an item (the scene's difficulty), so the interval of a
    difference is usually much narrower than the two separate intervals suggest.

    Args:
        a, b: one value per item: two sequences of equal length (item ``i`` of ``a`` pairs with item
            ``i`` of ``b``) or two mappings ``item id -> value`` (paired by id). Items missing from
            either side (absent, None or NaN) are dropped.
        n_boot, level, seed: as in :func:`bootstrap_ci`.

    Returns:
        ``{"mean", "lo", "hi", "n"}`` of ``a - b``; ``n`` counts the pairs used.
    """
    _check_settings(n_boot, level)
    return _interval(_pairs(a, b), n_boot, level, seed)


def ratio_bootstrap_ci(numerator: Mapping[Any, Any], denominator: Mapping[Any, Any], n_boot: int = 2000,
                       level: float = 0.95, seed: int = 0, min_denominator: float = 0.0) -> dict[str, Any]:
    """``mean(numerator) / mean(denominator)`` over the items present in both, with a bootstrap interval
    that resamples items (the numerator and denominator of an item stay together).

    A ratio of means, not a mean of per-item ratios: an item whose denominator is near 0 (a scene
    where the model paints frame 0 wrong) would otherwise dominate. ``None`` when the denominator's
    mean is 0 or under ``min_denominator``: a ratio of two near-zero means is noise.
    """
    _check_settings(n_boot, level)
    keys = [k for k in numerator if k in denominator and not _is_missing(numerator[k])
            and not _is_missing(denominator[k])]
    num = np.array([float(numerator[k]) for k in keys])
    den = np.array([float(denominator[k]) for k in keys])
    n = len(keys)
    if n == 0 or den.mean() <= 0.0 or den.mean() < float(min_denominator):
        return {"mean": None, "lo": None, "hi": None, "n": n}
    ratio = float(num.mean() / den.mean())
    if n < 2:
        return {"mean": ratio, "lo": ratio, "hi": ratio, "n": n}
    idx = np.random.default_rng(seed).integers(0, n, size=(int(n_boot), n))
    d = den[idx].mean(axis=1)
    ratios = num[idx].mean(axis=1)[d > 0] / d[d > 0]
    alpha = (1.0 - float(level)) / 2.0
    lo, hi = np.quantile(ratios, [alpha, 1.0 - alpha])
    return {"mean": ratio, "lo": float(lo), "hi": float(hi), "n": n}
