"""The statistics against scipy (exact equality for KS) and against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from loopline_monitoring import stats
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon


def _ks_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:  # type: ignore[type-arg]
    rng = np.random.default_rng(20261122)
    cases = []
    for i in range(60):
        n1, n2 = int(rng.integers(1, 2500)), int(rng.integers(1, 2500))
        cases.append((f"normal-{i}", rng.normal(size=n1), rng.normal(0.05 * (i % 4), size=n2)))
    for i in range(20):
        n1, n2 = int(rng.integers(5, 800)), int(rng.integers(5, 800))
        cases.append((f"ties-{i}", rng.integers(0, 6, n1).astype(float), rng.integers(0, 7, n2).astype(float)))
        cases.append((f"rounded-{i}", np.round(rng.normal(size=n1), 1), np.round(rng.normal(size=n2), 1)))
    base = rng.normal(size=700)
    # neighbours one ulp apart: the packed-label fast path must notice and fall back
    cases.append(("ulp-neighbours", base, np.nextafter(rng.choice(base, 600), np.inf)))
    cases.append(("ulp-neighbours-negative", -np.abs(base), np.nextafter(-np.abs(rng.choice(base, 500)), np.inf)))
    cases.append(("infinities-and-signed-zeros", np.r_[base, np.inf, -np.inf, -0.0], np.r_[base[:300], 0.0, np.inf]))
    cases.append(("equal-sizes-exact", rng.normal(size=1000), rng.normal(0.1, size=1000)))
    cases.append(("one-value-each", np.array([1.0]), np.array([2.0])))
    cases.append(("identical", base, base.copy()))
    # around scipy's exact/asymptotic switch (max(n1, n2) <= 10000 is exact)
    cases.append(("boundary-exact", rng.normal(size=10_000), rng.normal(0.02, size=700)))
    cases.append(("boundary-asymp", rng.normal(size=10_001), rng.normal(0.02, size=700)))
    cases.append(("large-asymp", rng.normal(size=60_000), rng.normal(0.01, size=45_000)))
    return cases


@pytest.mark.parametrize(("name", "x", "y"), _ks_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_ks_equals_scipy_exactly(name: str, x: np.ndarray, y: np.ndarray) -> None:  # type: ignore[type-arg]
    ours = stats.ks_2samp(x, y)
    theirs = sps.ks_2samp(x, y)
    assert ours.statistic == theirs.statistic, name  # bit for bit, not approximately
    assert ours.pvalue == theirs.pvalue, name
    assert ours.method == ("exact" if max(len(x), len(y)) <= stats.KS_MAX_AUTO_N else "asymp")


def test_ks_against_a_prepared_reference_sample_equals_scipy() -> None:
    rng = np.random.default_rng(3)
    reference = stats.SortedSample(rng.normal(size=5000))
    for shift in (0.0, 0.1, 0.5):
        window = rng.normal(shift, size=800)
        ours, theirs = reference.ks(window), sps.ks_2samp(reference.values, window)
        assert (ours.statistic, ours.pvalue) == (theirs.statistic, theirs.pvalue)


def test_psi_matches_a_hand_computed_case() -> None:
    # Reference quantile bins [0, 1), [1, 2), [2, 3] with shares 0.2, 0.5, 0.3; the edge bins are open-ended.
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    reference = np.array([0.2, 0.5, 0.3])
    # 10 live values: 4 fall in the first bin (two of them below the reference's minimum, kept there, not
    # dropped), 4 in the second (1.0 sits on an inner edge: it belongs to the upper bin), 2 in the last (one
    # above the maximum, 3.0 itself is the last bin's closed end).
    values = np.array([-5.0, -0.1, 0.3, 0.9, 1.0, 1.2, 1.5, 1.99, 3.0, 42.0])
    counts = stats.bin_counts(edges, values)
    assert counts.tolist() == [4, 4, 2]
    current = counts / counts.sum()  # 0.4, 0.4, 0.2
    by_hand = (
        (0.4 - 0.2) * math.log(0.4 / 0.2)  # 0.138629...
        + (0.4 - 0.5) * math.log(0.4 / 0.5)  # 0.022314...
        + (0.2 - 0.3) * math.log(0.2 / 0.3)  # 0.040546...
    )
    assert stats.psi(reference, current) == pytest.approx(by_hand, rel=1e-12)
    assert stats.psi(reference, current) == pytest.approx(0.2014903, abs=1e-7)


def test_psi_floors_empty_bins_instead_of_dividing_by_zero() -> None:
    reference = np.array([0.5, 0.5, 0.0])
    current = np.array([0.0, 0.5, 0.5])
    eps = stats.PSI_EPSILON
    expected = (eps - 0.5) * math.log(eps / 0.5) + (0.5 - eps) * math.log(0.5 / eps)
    assert stats.psi(reference, current) == pytest.approx(expected, rel=1e-12)
    assert stats.psi(reference, reference) == 0.0


def test_quantile_edges_equal_numpy_quantile() -> None:
    rng = np.random.default_rng(4)
    probabilities = np.linspace(0.0, 1.0, 11)
    for n in (1, 2, 3, 10, 999, 50_000):
        for values in (rng.normal(size=n), np.round(rng.exponential(size=n), 1)):
            theirs = np.quantile(values, probabilities)
            assert stats.quantiles(np.sort(values), probabilities).tolist() == theirs.tolist()
            assert stats.quantile_edges(values, 10).tolist() == np.unique(theirs).tolist()


def test_bins_with_a_single_edge_hold_everything() -> None:
    assert stats.bin_counts(np.array([1.0]), np.array([-1.0, 1.0, 3.0])).tolist() == [3]


def test_chi_square_equals_scipy_contingency() -> None:
    rng = np.random.default_rng(9)
    for _ in range(20):
        k = int(rng.integers(2, 12))
        reference = rng.integers(0, 500, k).astype(float)
        current = rng.integers(0, 80, k).astype(float)
        reference[0] += 1
        current[0] += 1
        statistic, p, dof = stats.chi2_homogeneity(reference, current)
        keep = (reference + current) > 0
        expected = sps.chi2_contingency(np.vstack([reference[keep], current[keep]]), correction=False)
        assert statistic == pytest.approx(expected.statistic, rel=1e-10)
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        assert dof == expected.dof


def test_chi_square_on_two_categories_is_the_two_proportion_z_test() -> None:
    reference, current = np.array([700.0, 300.0]), np.array([120.0, 80.0])
    _, p, _ = stats.chi2_homogeneity(reference, current)
    p1, p2 = 300 / 1000, 80 / 200
    pooled = 380 / 1200
    z = (p2 - p1) / math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 200))
    assert p == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)


def test_jensen_shannon_and_wasserstein_equal_scipy() -> None:
    rng = np.random.default_rng(11)
    for _ in range(10):
        p, q = rng.random(8), rng.random(8)
        q[3] = 0.0
        assert stats.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q), rel=1e-12)
        u, v = rng.normal(size=int(rng.integers(2, 3000))), rng.normal(0.3, size=int(rng.integers(2, 3000)))
        assert stats.wasserstein(u, v) == pytest.approx(sps.wasserstein_distance(u, v), rel=1e-10)
    reference = stats.SortedSample(rng.normal(size=4000))
    window = rng.normal(1.0, size=500)
    assert stats.normed_wasserstein(reference, window) == pytest.approx(
        sps.wasserstein_distance(reference.values, window) / np.std(reference.values), rel=1e-10
    )


def test_holm_step_down() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    rejected, critical = stats.holm(p, 0.05)
    # sorted: 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2 -> stop; 0.04 is not rejected either
    assert rejected.tolist() == [True, False, False, True]
    assert critical.tolist() == pytest.approx([0.05 / 3, 0.05 / 1, 0.05 / 2, 0.05 / 4])
    assert stats.holm(np.array([]), 0.05)[0].shape == (0,)


def _bucketed_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:  # type: ignore[type-arg]
    """Random shapes for the bucketed KS path: unequal sizes, ties within and across samples, tails beyond the
    bucket range, infinities, signed zeros, one-ulp neighbours."""
    rng = np.random.default_rng(20261123)
    cases = []
    for i in range(24):
        n1, n2 = int(rng.integers(20, 3000)), int(rng.integers(20, 3000))
        kind = i % 6
        if kind == 0:
            x, y = rng.normal(size=n1), rng.normal(0.1 * (i % 3), size=n2)
        elif kind == 1:  # heavy ties: few distinct values shared by both samples
            x, y = rng.integers(0, 9, n1).astype(float), rng.integers(0, 11, n2).astype(float)
        elif kind == 2:  # rounded: ties and distinct values mixed
            x, y = np.round(rng.normal(size=n1), 1), np.round(rng.normal(0.05, size=n2), 2)
        elif kind == 3:  # heavy tails far outside any bucket range
            x, y = rng.standard_cauchy(n1), rng.standard_cauchy(n2) * 1.2
        elif kind == 4:
            base = rng.normal(size=n1)
            x, y = base, np.nextafter(rng.choice(base, n2), np.inf)
        else:
            x = np.r_[rng.normal(size=n1), np.inf, -np.inf, -0.0]
            y = np.r_[rng.normal(size=n2), 0.0, np.inf, 1e300]
        cases.append((f"{['normal', 'ties', 'rounded', 'cauchy', 'ulp', 'extremes'][kind]}-{i}", x, y))
    return cases


@pytest.mark.parametrize(("name", "x", "y"), _bucketed_cases(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("count", [1024, 37, 4])
def test_bucketed_ks_statistic_equals_scipy_exactly(name: str, x: np.ndarray, y: np.ndarray, count: int) -> None:  # type: ignore[type-arg]
    # Few buckets put many values, ties and both samples in each: the hardest case for the bounds. The
    # reference side is both unsorted (raw arrays) and sorted (a prepared profile, handing out slices).
    # The raw statistic (before scipy rounds it to a multiple of 1/lcm in exact mode) must equal the one-sort
    # path's, and through the shared p-value step give scipy's statistic and p-value.
    buckets = stats.ValueBuckets.spanning([x, y], count)
    assert buckets is not None
    n1, n2 = x.shape[0], y.shape[0]
    raw = stats.ks_statistic_bucketed(stats.BucketedSample(x, buckets), stats.BucketedSample(y, buckets), buckets)
    prepared = stats.BucketedSample(np.sort(x), buckets, is_sorted=True)
    window = stats.BucketedSample(y, buckets)
    assert raw == stats.ks_statistic(x, y), name
    assert stats.ks_statistic_bucketed(prepared, window, buckets) == raw, name
    assert stats.ks_statistic_bucketed(window, prepared, buckets) == stats.ks_statistic(y, x), name
    ours, theirs = stats.ks_pvalue(raw, n1, n2), sps.ks_2samp(x, y)
    assert (ours.statistic, ours.pvalue) == (theirs.statistic, theirs.pvalue), name


def test_value_buckets_keep_the_order_of_values() -> None:
    rng = np.random.default_rng(12)
    values = np.sort(np.r_[rng.standard_cauchy(5000), -np.inf, np.inf, -0.0, 0.0, 5e-324, -5e-324, 1.7e308])
    buckets = stats.ValueBuckets(-3.0, 2.5, 97)
    index = buckets.index(values)
    assert (np.diff(index) >= 0).all()
    assert index.min() == 0 and index.max() == 96
    assert stats.ValueBuckets.spanning([np.full(100, 2.0)], 64) is None  # no range to span: callers sort instead


@pytest.mark.parametrize("shift", [0.0, 0.03, 0.5])
def test_large_samples_take_the_bucketed_path_and_equal_scipy(shift: float) -> None:
    # Above BUCKETED_MIN_N, from raw arrays and from a prepared reference; unequal sizes, some ties.
    rng = np.random.default_rng(int(shift * 100) + 1)
    x = np.r_[rng.normal(size=26_000), np.round(rng.normal(size=4_000), 2)]
    y = np.r_[rng.normal(shift, size=19_000), np.round(rng.normal(shift, size=2_500), 2)]
    assert x.shape[0] + y.shape[0] >= stats.BUCKETED_MIN_N
    theirs = sps.ks_2samp(x, y)
    for ours in (stats.ks_2samp(x, y), stats.SortedSample(x).ks(y)):
        assert (ours.statistic, ours.pvalue, ours.method) == (theirs.statistic, theirs.pvalue, "asymp")


def test_large_quantiles_equal_numpy_without_a_full_sort() -> None:
    rng = np.random.default_rng(13)
    probabilities = np.linspace(0.0, 1.0, 11)
    n = stats.BUCKETED_MIN_N + 1234
    for values in (rng.normal(size=n), np.round(rng.exponential(size=n), 1), rng.standard_cauchy(n),
                   rng.integers(0, 3, n).astype(float)):
        assert stats.quantiles_of(values, probabilities).tolist() == np.quantile(values, probabilities).tolist()
        ranks = np.array([0, 1, n // 3, n // 2, n - 2, n - 1])
        assert stats.order_statistics(values, ranks).tolist() == np.sort(values)[ranks].tolist()
