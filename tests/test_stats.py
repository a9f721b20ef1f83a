"""Statistics over seeds: the Student t distribution, intervals and the paired t-test, against hand values."""
from __future__ import annotations

import math

import pytest

from aeframe.report.stats import (confidence_interval, holm, mean_std, paired_t_test, sign_flip_p, regularized_incomplete_beta, t_cdf,
                           t_quantile, t_sf)


# -- the t distribution ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "df", "table"),
    [
        # Two-sided 95 % critical values, as printed in every t table.
        (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 5, 2.571), (0.975, 10, 2.228),
        (0.975, 30, 2.042),
        (0.95, 20, 1.725), (0.995, 10, 3.169), (0.9, 1, 3.078), (0.999, 4, 7.173),
    ],
)
def test_t_quantile_matches_the_table(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-4)


def test_t_quantile_to_more_digits():
    # df = 1 is the Cauchy distribution: t = tan(π (p − 1/2)).
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-10)  # 12.7062047
    # df = 2 inverts in closed form: t = (2p − 1) √(2 / (4 p (1 − p))).
    assert t_quantile(0.975, 2) == pytest.approx(0.95 * math.sqrt(2 / (4 * 0.975 * 0.025)), rel=1e-10)  # 4.3026527
    assert t_quantile(0.975, 10) == pytest.approx(2.228138852, rel=1e-8)
    # A huge df is the normal distribution; df = inf is the normal exactly.
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959963985, rel=1e-8)


def test_t_cdf_known_values():
    for df in (1, 2, 3.5, 10, 100):
        assert t_cdf(0.0, df) == 0.5
    assert t_cdf(2.0, 5) == pytest.approx(0.94903026, abs=1e-8)
    # df = 1: F(t) = 1/2 + atan(t) / π.
    for t in (-30.0, -1.0, 0.3, 1.0, 12.706):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, rel=1e-12)
    # df = 2: F(t) = 1/2 + t / (2 √(2 + t²)).
    for t in (-4.0, -0.5, 1.0, 5.0):
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), rel=1e-12)
    # df = 4: F(t) = 1/2 + 3/8 · t/√(1 + t²/4) · (1 − t²/(12 (1 + t²/4))).
    for t in (-2.0, 0.7, 3.0):
        u = 1 + t * t / 4
        assert t_cdf(t, 4) == pytest.approx(0.5 + 3 / 8 * t / math.sqrt(u) * (1 - t * t / (12 * u)), rel=1e-12)
    assert t_cdf(math.inf, 3) == 1.0 and t_cdf(-math.inf, 3) == 0.0
    assert math.isnan(t_cdf(math.nan, 3))


def test_t_cdf_is_symmetric_and_the_quantile_inverts_it():
    for df in (1, 2, 2.5, 7, 29, 300):
        for t in (0.1, 1.0, 2.0, 4.5, 20.0):
            assert t_cdf(-t, df) == pytest.approx(1 - t_cdf(t, df), abs=1e-14)
            assert t_sf(t, df) == pytest.approx(1 - t_cdf(t, df), abs=1e-14)
        for p in (1e-9, 0.01, 0.2, 0.5, 0.8, 0.975, 1 - 1e-9):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, rel=1e-9)
            assert t_quantile(1 - p, df) == pytest.approx(-t_quantile(p, df), rel=1e-9, abs=1e-12)
    assert t_quantile(0.5, 4) == 0.0
    assert t_quantile(0.0, 4) == -math.inf and t_quantile(1.0, 4) == math.inf


def test_t_rejects_nonsense():
    with pytest.raises(ValueError):
        t_cdf(1.0, 0)
    with pytest.raises(ValueError):
        t_cdf(1.0, math.nan)
    with pytest.raises(ValueError):
        t_quantile(1.5, 3)


def test_regularized_incomplete_beta():
    # I_x(a, b) for integer a, b is a binomial tail: I_0.4(2, 3) = P(Bin(4, 0.4) ≥ 2)
    # = 6·0.4²·0.6² + 4·0.4³·0.6 + 0.4⁴ = 0.3456 + 0.1536 + 0.0256 = 0.5248.
    assert regularized_incomplete_beta(2, 3, 0.4) == pytest.approx(0.5248, rel=1e-13)
    # I_x(1, 1) = x, I_x(a, 1) = x^a, and the symmetry I_x(a, b) = 1 − I_{1−x}(b, a).
    assert regularized_incomplete_beta(1, 1, 0.3) == pytest.approx(0.3, rel=1e-13)
    assert regularized_incomplete_beta(2.5, 1, 0.9) == pytest.approx(0.9 ** 2.5, rel=1e-13)
    assert regularized_incomplete_beta(3, 0.5, 0.2) == pytest.approx(1 - regularized_incomplete_beta(0.5, 3, 0.8),
                                                                      rel=1e-12)
    assert regularized_incomplete_beta(2, 3, 0.0) == 0.0 and regularized_incomplete_beta(2, 3, 1.0) == 1.0


# -- mean, std, interval -----------------------------------------------------------------------


def test_mean_std():
    # mean 2; std √(((1−2)² + 0 + (3−2)²) / (3 − 1)) = 1.
    assert mean_std([1, 2, 3]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, None)
    assert mean_std([4, 4, 4]) == (4.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_confidence_interval_by_hand():
    # [1, 2, 3]: mean 2, s = 1, n = 3, t_{0.975, 2} = 4.302653:
    # half width 4.302653 · 1 / √3 = 2.484138 → (−0.484138, 4.484138).
    low, high = confidence_interval([1, 2, 3])
    assert (low, high) == (pytest.approx(-0.484138, abs=1e-6), pytest.approx(4.484138, abs=1e-6))
    # [10, 12]: mean 11, s = √2, n = 2, t_{0.975, 1} = 12.706205: half width 12.706205 · √2 / √2.
    low, high = confidence_interval([10, 12])
    assert (low, high) == (pytest.approx(11 - 12.706205, abs=1e-6), pytest.approx(11 + 12.706205, abs=1e-6))
    # 90 %: t_{0.95, 2} = 2.919986: half width 2.919986 / √3 = 1.685854.
    low, high = confidence_interval([1, 2, 3], level=0.90)
    assert (low, high) == (pytest.approx(2 - 1.685854, abs=1e-6), pytest.approx(2 + 1.685854, abs=1e-6))


def test_confidence_interval_edge_cases():
    assert confidence_interval([3.0]) is None
    assert confidence_interval([]) is None
    assert confidence_interval([3.0, 3.0, 3.0]) == (3.0, 3.0)  # no spread: the interval is the point
    low, high = confidence_interval([1.0, math.nan, 2.0])
    assert math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError):
        confidence_interval([1, 2], level=1.0)


# -- the paired t-test -------------------------------------------------------------------------


def test_paired_t_test_by_hand_df_2():
    # a − b = [1 − 0, 2 − 0, 3 − 1] = [1, 2, 2]: mean 5/3,
    # s = √(((−2/3)² + (1/3)² + (1/3)²) / 2) = √(1/3), s/√3 = 1/3, t = (5/3) / (1/3) = 5.
    # df = 2: two-sided p = 1 − t / √(2 + t²) = 1 − 5 / √27 = 0.0377496.
    t, p = paired_t_test([1, 2, 3], [0, 0, 1])
    assert t == pytest.approx(5.0, rel=1e-12)
    assert p == pytest.approx(1 - 5 / math.sqrt(27), rel=1e-10)
    assert p == pytest.approx(0.0377496, abs=1e-7)
    # Swapping the sides flips t, not p.
    t, p = paired_t_test([0, 0, 1], [1, 2, 3])
    assert t == pytest.approx(-5.0, rel=1e-12) and p == pytest.approx(0.0377496, abs=1e-7)


def test_paired_t_test_by_hand_df_4():
    # a − b = [1, 2, 0, 3, 4]: mean 2, s = √((1 + 0 + 4 + 1 + 4) / 4) = √2.5 = 1.581139,
    # s/√5 = 0.707107, t = 2 / 0.707107 = 2.828427 (= 2√2).
    # df = 4: F(t) = 1/2 + 3/8 · t/√(1 + t²/4) · (1 − t²/(12 (1 + t²/4))); with t² = 8: u = 3,
    # F = 1/2 + 3/8 · 2√2/√3 · (1 − 8/36) = 1/2 + 0.612372 · 0.777778 = 0.976289; p = 2 (1 − F) = 0.047421.
    t, p = paired_t_test([6, 7, 5, 9, 10], [5, 5, 5, 6, 6])
    assert t == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    expected = 2 * (1 - (0.5 + 3 / 8 * (2 * math.sqrt(2) / math.sqrt(3)) * (1 - 8 / 36)))
    assert p == pytest.approx(expected, rel=1e-10)
    assert p == pytest.approx(0.047421, abs=1e-6)


def test_paired_t_test_zero_variance_and_too_few_pairs():
    assert paired_t_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == (0.0, 1.0)  # no difference at all
    # Every seed moved by exactly the same amount: the exact sign-flip p, 2 / 2^n, never 0.
    assert paired_t_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]) == (math.inf, 0.25)  # every seed +1 exactly
    assert paired_t_test([0.0, 1.0], [1.0, 2.0]) == (-math.inf, 0.5)  # every seed −1 exactly
    # The case: 0.86 − 0.85 and 0.85 − 0.84 differ by float rounding alone; it gave (inf, 0.0).
    assert paired_t_test([0.85, 0.86], [0.84, 0.85]) == (math.inf, 0.5)
    t, p = paired_t_test([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.89, 0.79, 0.69, 0.59, 0.49, 0.39])
    assert (t, p) == (math.inf, 2 ** -5)
    assert paired_t_test([1.0], [2.0]) is None
    assert paired_t_test([], []) is None
    t, p = paired_t_test([1.0, math.inf], [0.0, 0.0])
    assert math.isnan(t) and math.isnan(p)
    with pytest.raises(ValueError, match="pairs"):
        paired_t_test([1.0, 2.0], [1.0])


def test_sign_flip_p_is_two_of_the_2_to_the_n_sign_patterns():
    assert [sign_flip_p(n) for n in (1, 2, 5, 6)] == [1.0, 0.5, 0.0625, 0.03125]
    with pytest.raises(ValueError):
        sign_flip_p(0)


def test_holm_by_hand():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> kept monotone: 0.06.
    assert holm([0.01, 0.04, None, 0.03, 0.005]) == [pytest.approx(0.03), pytest.approx(0.06), None,
                                                      pytest.approx(0.06), pytest.approx(0.02)]
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # never above 1
    nan = holm([math.nan, 0.01])
    assert math.isnan(nan[0]) and nan[1] == pytest.approx(0.01)  # NaN is no test: m = 1
    assert holm([]) == []
