"""fastmarl.analysis.stats: the numbers of the reports' statistics."""

import numpy as np
import pytest

from fastmarl.analysis.stats import bootstrap_mean_ci, first_crossing, interpolate_curves, iqm_ci, prob_improvement

pytest.importorskip("rliable")


def test_iqm_is_the_mean_of_the_middle_half_with_a_ci_around_it():
    out = iqm_ci({"a": [1, 2, 3, 4, 5, 6, 7, 100], "b": [-3, -1, -2, -4, -5]}, reps=2000)
    assert out["a"]["iqm"] == pytest.approx(4.5)  # (3 + 4 + 5 + 6) / 4: the outlier 100 is trimmed
    assert out["a"]["mean"] == pytest.approx(128 / 8)
    assert out["b"]["iqm"] == pytest.approx(-3.0)  # 5 runs: one trimmed at each end, mean of -2, -3, -4
    for r in out.values():
        lo, hi = r["iqm_ci"]
        assert lo <= r["iqm"] <= hi and lo < hi
    assert out["a"]["runs"] == 8 and out["b"]["runs"] == 5


def test_iqm_ci_is_seeded():
    s = {"a": np.random.default_rng(0).normal(size=7)}
    assert iqm_ci(s, reps=500, seed=3) == iqm_ci(s, reps=500, seed=3)


def test_probability_of_improvement():
    assert prob_improvement([5, 6, 7], [1, 2, 3], reps=500)["p"] == pytest.approx(1.0)
    assert prob_improvement([1, 2, 3], [5, 6, 7], reps=500)["p"] == pytest.approx(0.0)
    assert prob_improvement([1, 2], [1, 2], reps=500)["p"] == pytest.approx(0.5)  # ties count half


def test_bad_scores_are_refused_by_name():
    with pytest.raises(ValueError, match="'b'.*NaN"):
        iqm_ci({"a": [1.0, 2.0], "b": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="no scores for 'a'"):
        iqm_ci({"a": []})


def test_curves_on_a_common_grid_and_their_band():
    grid = np.array([0.0, 5.0, 10.0, 20.0])
    v = interpolate_curves([(np.array([0, 10]), np.array([0, 10])), (np.array([0, 10]), np.array([2, 2]))], grid)
    np.testing.assert_allclose(v, [[0, 5, 10, 10], [2, 2, 2, 2]])  # past the last x: the last value
    mean, low, high = bootstrap_mean_ci(v, reps=4000)
    np.testing.assert_allclose(mean, [1, 3.5, 6, 6])
    assert np.all(low <= mean) and np.all(mean <= high)
    # two runs: a resample is run 1 twice, run 2 twice, or one of each -> the band spans the two runs
    np.testing.assert_allclose(low, [0, 2, 2, 2])
    np.testing.assert_allclose(high, [2, 5, 10, 10])
    const = bootstrap_mean_ci(np.full((4, 3), 7.0))
    for part in const:
        np.testing.assert_allclose(part, 7.0)
    with pytest.raises(ValueError, match="runs, points"):
        bootstrap_mean_ci(np.zeros(3))


def test_first_crossing():
    x, y = np.array([1, 2, 3]), np.array([-20, -15, -12])
    assert first_crossing(x, y, -16) == 2.0 and first_crossing(x, y, -10) is None
