import numpy as np
import pytest
from compare_rundirs import acc_metrics, write_run
from scipy import stats as scipy_stats

from regbench.compare.report import build_report, lower_is_better
from regbench.compare.runs import load_run_dirs
from regbench.compare.stats import PAIRED_TEST
from regbench.errors import UserError


def records(path):
    return load_run_dirs([str(path)]).completed


def test_groups_are_ranked_best_first_and_compared_with_no_regularizer(sweep):
    report = build_report(records(sweep["dir"]), "test_acc", ["regularizer"], None)
    values = sweep["values"]
    assert [row.label for row in report.rows] == ["regularizer=cutmix", "regularizer=mixup", "regularizer=none"]
    assert [row.rank for row in report.rows] == [1, 2, 3]
    assert report.baseline == {"regularizer": "none"}
    cutmix, _, none = report.rows
    assert none.is_baseline and none.comparison is None
    assert cutmix.summary.mean == pytest.approx(np.mean(values["cutmix"]))
    assert cutmix.comparison.test == PAIRED_TEST
    assert cutmix.comparison.p_value == pytest.approx(scipy_stats.ttest_rel(values["cutmix"], values["none"]).pvalue)
    assert cutmix.seeds == [0, 1, 2, 3]


def test_loss_like_metrics_rank_lowest_first(sweep):
    # test_nll = 1 - test_acc in the synthetic runs: the lowest nll is the best and is ranked first
    report = build_report(records(sweep["dir"]), "test_nll", ["regularizer"], None)
    assert report.lower_is_better
    means = [row.summary.mean for row in report.rows]
    assert means == sorted(means)
    assert report.rows[0].label == "regularizer=cutmix"


@pytest.mark.parametrize(("metric", "lower"), [("test_acc", False), ("best_val_acc", False), ("val_nll", True),
                                               ("test_ece", True), ("train_loss", True)])
def test_metric_direction(metric, lower):
    assert lower_is_better(metric) is lower


def test_explicit_baseline_replaces_the_default(sweep):
    report = build_report(records(sweep["dir"]), "test_acc", ["regularizer"], {"regularizer": "mixup"})
    by_label = {row.label: row for row in report.rows}
    assert by_label["regularizer=mixup"].is_baseline
    expected = np.mean(sweep["values"]["none"]) - np.mean(sweep["values"]["mixup"])
    assert by_label["regularizer=none"].comparison.diff == pytest.approx(expected)


def test_without_a_none_group_nothing_is_compared(tmp_path):
    for seed in range(2):
        write_run(tmp_path / f"c{seed}", seed=seed, metrics=acc_metrics(0.9), regularizer={"cutmix": {}})
        write_run(tmp_path / f"m{seed}", seed=seed, metrics=acc_metrics(0.8), regularizer={"mixup": {}})
    report = build_report(records(tmp_path), "test_acc", ["regularizer"], None)
    assert report.baseline is None
    assert all(row.comparison is None and row.baseline_label is None for row in report.rows)


def test_single_group_and_single_run_groups_do_not_crash(tmp_path):
    write_run(tmp_path / "a", seed=0, metrics=acc_metrics(0.9))
    report = build_report(records(tmp_path), "test_acc", [], None)
    [row] = report.rows
    assert report.baseline is None and row.label == "all runs"
    assert row.summary.n == 1 and row.summary.ci_low is None


def test_runs_without_the_metric_are_left_out_and_named(tmp_path):
    write_run(tmp_path / "a", seed=0, metrics=acc_metrics(0.9))
    write_run(tmp_path / "b", seed=1, metrics={**acc_metrics(0.8), "test_acc": float("nan")})
    report = build_report(records(tmp_path), "test_acc", [], None)
    assert report.rows[0].summary.n == 1
    assert report.runs_without_metric == [str((tmp_path / "b").resolve())]


def test_unknown_metric_lists_the_available_ones(sweep):
    with pytest.raises(UserError, match=r"'test_accuracy'.*available: .*test_acc"):
        build_report(records(sweep["dir"]), "test_accuracy", ["regularizer"], None)


def test_holm_adjusts_over_every_test_of_the_table(sweep):
    report = build_report(records(sweep["dir"]), "test_acc", ["regularizer"], None)
    cutmix, mixup, none = report.rows
    raw = [cutmix.comparison.p_value, mixup.comparison.p_value]
    # two tests: the smaller p-value doubled; the larger one times 1, but never below the smaller's adjustment
    smaller, larger = sorted(raw)
    expected = {smaller: min(1.0, 2 * smaller), larger: max(min(1.0, 2 * smaller), larger)}
    assert (cutmix.p_holm, mixup.p_holm) == pytest.approx((expected[raw[0]], expected[raw[1]]))
    assert none.p_holm is None and report.tests == 2


def test_a_sweeps_summary_compares_with_the_baseline_and_metric_its_config_names(tmp_path):
    from regbench.sweeps.summary import sweep_report

    for seed in range(3):
        write_run(tmp_path / f"b{seed}", seed=seed, metrics=acc_metrics(0.8 + seed / 100), norm="batchnorm")
        write_run(tmp_path / f"g{seed}", seed=seed, metrics=acc_metrics(0.7 + seed / 50), norm="groupnorm")
    report = sweep_report(tmp_path, {"metric": "test_nll", "baseline": "norm=batchnorm"})
    by_label = {row.label: row for row in report.rows}
    assert report.metric == "test_nll" and by_label["norm=batchnorm"].is_baseline
    assert by_label["norm=groupnorm"].comparison.diff == pytest.approx(0.8 + 0.01 - (0.7 + 0.02))  # nll = 1 - acc
    assert sweep_report(tmp_path, {"metric": "test_acc", "baseline": None}).baseline is None
