import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from regbench.compare.stats import PAIRED_TEST, WELCH_TEST, compare, holm, summarize

GROUP = [0.920, 0.935, 0.921, 0.918, 0.930]
BASE = [0.900, 0.910, 0.905, 0.895, 0.912]


def with_seeds(values, seeds=None):
    return list(zip(seeds if seeds is not None else range(len(values)), values))


def test_summary_matches_scipy_t_interval():
    summary = summarize(GROUP)
    sem = scipy_stats.sem(GROUP)
    low, high = scipy_stats.t.interval(0.95, len(GROUP) - 1, loc=np.mean(GROUP), scale=sem)
    assert summary.n == 5
    assert summary.mean == pytest.approx(np.mean(GROUP))
    assert summary.std == pytest.approx(np.std(GROUP, ddof=1))
    assert (summary.ci_low, summary.ci_high) == pytest.approx((low, high))


def test_summary_known_values():
    # mean 2, std 1, half width t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    summary = summarize([1.0, 2.0, 3.0])
    assert (summary.mean, summary.std) == pytest.approx((2.0, 1.0))
    assert (summary.ci_low, summary.ci_high) == pytest.approx((2.0 - 2.484138, 2.0 + 2.484138), abs=1e-6)


def test_single_run_has_no_std_or_interval():
    summary = summarize([0.9])
    assert (summary.n, summary.mean, summary.std, summary.ci_low, summary.ci_high) == (1, 0.9, None, None, None)


def test_shared_seeds_use_paired_test_matching_scipy():
    result = compare(with_seeds(GROUP), with_seeds(BASE))
    expected = scipy_stats.ttest_rel(GROUP, BASE)
    interval = expected.confidence_interval(0.95)
    assert result.test == PAIRED_TEST
    assert result.n == 5
    assert result.diff == pytest.approx(np.mean(GROUP) - np.mean(BASE))
    assert result.p_value == pytest.approx(expected.pvalue)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))


def test_pairing_follows_seeds_not_order():
    # the same samples listed in another order must pair the same way
    shuffled = [4, 2, 0, 3, 1]
    result = compare([(s, GROUP[s]) for s in shuffled], with_seeds(BASE))
    assert result.p_value == pytest.approx(scipy_stats.ttest_rel(GROUP, BASE).pvalue)


def test_paired_test_uses_only_shared_seeds():
    group = with_seeds(GROUP, seeds=[0, 1, 2, 3, 4])
    base = with_seeds(BASE[:4] + [0.5], seeds=[0, 1, 2, 3, 9])  # seed 9 has no partner, seed 4 neither
    result = compare(group, base)
    assert result.test == PAIRED_TEST
    assert result.n == 4
    assert result.diff == pytest.approx(np.mean(GROUP[:4]) - np.mean(BASE[:4]))
    assert result.p_value == pytest.approx(scipy_stats.ttest_rel(GROUP[:4], BASE[:4]).pvalue)


def test_disjoint_seeds_use_welch_matching_scipy():
    base_values = [0.900, 0.910, 0.905]
    result = compare(with_seeds(GROUP), with_seeds(base_values, seeds=[10, 11, 12]))
    expected = scipy_stats.ttest_ind(GROUP, base_values, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert result.test == WELCH_TEST
    assert result.n == 8
    assert result.diff == pytest.approx(np.mean(GROUP) - np.mean(base_values))
    assert result.p_value == pytest.approx(expected.pvalue)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))


def test_repeated_seed_falls_back_to_welch():
    group = with_seeds(GROUP[:4], seeds=[0, 0, 1, 2])
    result = compare(group, with_seeds(BASE[:3]))
    assert result.test == WELCH_TEST
    assert result.p_value == pytest.approx(scipy_stats.ttest_ind(GROUP[:4], BASE[:3], equal_var=False).pvalue)


def test_single_shared_seed_is_not_paired():
    result = compare(with_seeds([0.9, 0.91], seeds=[0, 1]), with_seeds([0.8, 0.82], seeds=[1, 2]))
    assert result.test == WELCH_TEST


def test_group_with_one_run_gives_difference_without_test():
    result = compare(with_seeds([0.8]), with_seeds(BASE, seeds=[5, 6, 7, 8, 9]))
    assert result.diff == pytest.approx(0.8 - np.mean(BASE))
    assert (result.ci_low, result.ci_high, result.p_value) == (None, None, None)
    assert result.test.startswith("none")


def test_identical_differences_give_no_p_value_instead_of_nan():
    result = compare(with_seeds([0.5, 0.6, 0.7]), with_seeds([0.5, 0.6, 0.7]))
    assert result.diff == 0.0
    assert result.p_value is None and result.test.startswith("none")
    assert not any(isinstance(v, float) and math.isnan(v) for v in (result.diff, result.ci_low, result.ci_high))


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx([0.03, 0.06, 0.06, 0.02, None])


def test_holm_caps_at_one_and_keeps_a_single_test_unchanged():
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.02]) == [0.02]
    assert holm([None, None]) == [None, None]
