"""Tests for the bootstrap confidence intervals (mvs2v_core.evaluation.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvs2v_core.errors import MVS2VError
from mvs2v_core.evaluation.stats import bootstrap_ci, paired_bootstrap_ci


def test_constant_values_give_a_point_interval() -> None:
    for value in (0.1, 0.7, 1.0 / 3.0):
        ci = bootstrap_ci([value] * 17)
        assert ci["lo"] == ci["hi"] == ci["mean"] and ci["n"] == 17
        assert ci["mean"] == pytest.approx(value, abs=1e-15)


def test_missing_items_are_dropped_and_tiny_samples_have_no_spread() -> None:
    ci = bootstrap_ci([0.5, None, float("nan"), 0.25, np.nan, 1.0])
    assert ci["n"] == 3 and ci["mean"] == pytest.approx(0.5833333333333334)
    assert ci["lo"] < ci["mean"] < ci["hi"]
    assert bootstrap_ci([0.4, None]) == {"mean": 0.4, "lo": 0.4, "hi": 0.4, "n": 1}
    assert bootstrap_ci([None, float("nan")]) == {"mean": None, "lo": None, "hi": None, "n": 0}
    assert bootstrap_ci([]) == {"mean": None, "lo": None, "hi": None, "n": 0}


def test_interval_covers_a_known_mean_with_the_expected_width_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 1.0, size=400)
    ci = bootstrap_ci(x)
    assert ci["lo"] < 0.3 < ci["hi"] and ci["mean"] == pytest.approx(float(x.mean()))
    # normal theory: half width 1.96 * sd / sqrt(n)
    half = 1.96 * float(x.std(ddof=1)) / math.sqrt(x.size)
    assert (ci["hi"] - ci["lo"]) / 2 == pytest.approx(half, rel=0.12)
    assert bootstrap_ci(x, seed=0) == ci  # deterministic
    assert bootstrap_ci(x, seed=1)["lo"] != ci["lo"]
    narrow = bootstrap_ci(x, level=0.5)
    assert ci["lo"] < narrow["lo"] < narrow["hi"] < ci["hi"]


def test_coverage_is_close_to_the_level() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for k in range(200):
        x = rng.uniform(0.0, 1.0, size=40)  # true mean 0.5
        ci = bootstrap_ci(x, n_boot=400, seed=k)
        hits += ci["lo"] <= 0.5 <= ci["hi"]
    assert 0.87 <= hits / 200 <= 0.99


def test_paired_differences() -> None:
    rng = np.random.default_rng(1)
    b = rng.integers(0, 40, size=30) / 4.0  # dyadic numbers: b + 0.25 - b is exactly 0.25
    ci = paired_bootstrap_ci(b + 0.25, b)
    assert ci == {"mean": 0.25, "lo": 0.25, "hi": 0.25, "n": 30}
    # Scene difficulty shared by both arms cancels: the paired interval is far narrower than either one.
    scene = rng.normal(0.0, 1.0, size=64)
    a_vals = scene + 0.1 + rng.normal(0.0, 0.05, size=64)
    b_vals = scene + rng.normal(0.0, 0.05, size=64)
    paired = paired_bootstrap_ci(a_vals, b_vals)
    single = bootstrap_ci(a_vals)
    assert paired["lo"] > 0.0 and paired["lo"] < 0.1 < paired["hi"]
    assert (paired["hi"] - paired["lo"]) < 0.1 * (single["hi"] - single["lo"])
    assert paired["mean"] == pytest.approx(float((a_vals - b_vals).mean()))


def test_paired_items_present_in_both() -> None:
    ci = paired_bootstrap_ci([1.0, None, 3.0, 2.0], [0.5, 1.0, float("nan"), 1.5])
    assert ci == {"mean": 0.5, "lo": 0.5, "hi": 0.5, "n": 2}
    by_id = paired_bootstrap_ci({"s1": 1.0, "s2": 4.0, "s3": 2.0}, {"s3": 1.0, "s1": 0.0, "s9": 7.0})
    assert by_id == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 2}


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(MVS2VError, match="pair item by item but have 3 and 2"):
        paired_bootstrap_ci([1, 2, 3], [1, 2])
    with pytest.raises(MVS2VError, match="two mappings"):
        paired_bootstrap_ci({"a": 1.0}, [1.0])
    with pytest.raises(MVS2VError, match="not a number"):
        bootstrap_ci([0.1, "high"])
    with pytest.raises(MVS2VError, match="finite"):
        bootstrap_ci([0.1, math.inf])
    with pytest.raises(MVS2VError, match="level"):
        bootstrap_ci([0.1, 0.2], level=95)
    with pytest.raises(MVS2VError, match="n_boot"):
        bootstrap_ci([0.1, 0.2], n_boot=0)


def test_ratio_of_means_is_not_a_mean_of_ratios():
    from mvs2v_core.evaluation.stats import ratio_bootstrap_ci

    num = {0: 0.5, 1: 0.4, 2: 0.0}
    den = {0: 1.0, 1: 0.8, 2: 0.001}  # a per-item ratio would be 0.5, 0.5, 0.0 -- here fine, but:
    r = ratio_bootstrap_ci(num, den)
    assert r["mean"] == pytest.approx(0.9 / 1.801) and r["n"] == 3 and r["lo"] <= r["mean"] <= r["hi"]
    spike = ratio_bootstrap_ci({0: 0.5, 1: 0.01}, {0: 1.0, 1: 0.0001})
    assert spike["mean"] == pytest.approx(0.51 / 1.0001)  # the mean of ratios would be 50.25
    assert ratio_bootstrap_ci({0: 1.0}, {0: 0.0})["mean"] is None
    assert ratio_bootstrap_ci({0: 1.0, 1: None}, {0: 2.0, 1: 1.0}) == {"mean": 0.5, "lo": 0.5, "hi": 0.5, "n": 1}
    # under min_denominator the ratio is undefined, not a large number
    assert ratio_bootstrap_ci({0: 0.04, 1: 0.02}, {0: 0.01, 1: 0.03}, min_denominator=0.2)["mean"] is None
    assert ratio_bootstrap_ci({0: 0.04, 1: 0.02}, {0: 0.2, 1: 0.2}, min_denominator=0.2)["mean"] == pytest.approx(0.15)
