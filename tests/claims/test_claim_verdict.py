"""The verdict on synthetic run records: reproduced, contradicted, not reproduced, and loss-like metrics."""
import json

import numpy as np
import pytest
from compare_rundirs import acc_metrics, write_run
from conftest import TINY_CARD
from scipy import stats as scipy_stats

from regbench.claims.card import load_card
from regbench.claims.plan import make_plan
from regbench.claims.results import read_results
from regbench.claims.verdict import CONTRADICTED, NOT_REPRODUCED, REPRODUCED, judge
from regbench.errors import ReportedError, UserError

SEEDS = [0, 1, 2, 3, 4]
BASELINE = [0.900, 0.910, 0.905, 0.895, 0.912]


def by_seed(values):
    return dict(zip(SEEDS, values))


@pytest.mark.parametrize(("shift", "outcome"), [
    ([0.020, 0.025, 0.018, 0.022, 0.030], REPRODUCED),  # every seed better
    ([-0.020, -0.025, -0.018, -0.022, -0.030], CONTRADICTED),  # every seed worse
    ([0.020, -0.025, 0.018, -0.022, 0.004], NOT_REPRODUCED),  # no consistent sign
])
def test_three_outcomes_follow_the_paired_interval(shift, outcome):
    treatment = [b + s for b, s in zip(BASELINE, shift)]
    verdict = judge(by_seed(BASELINE), by_seed(treatment), "test_acc")
    differences = np.array(treatment) - np.array(BASELINE)
    low, high = scipy_stats.t.interval(0.95, 4, loc=differences.mean(), scale=scipy_stats.sem(differences))
    assert verdict.outcome == outcome and verdict.seeds == tuple(SEEDS)
    assert verdict.effect == pytest.approx(differences.mean())
    assert (verdict.ci_low, verdict.ci_high) == pytest.approx((low, high))
    assert verdict.p_value == pytest.approx(scipy_stats.ttest_rel(treatment, BASELINE).pvalue)


def test_lower_is_better_for_loss_like_metrics():
    lower = by_seed([0.03, 0.04, 0.035, 0.03, 0.05])
    higher = by_seed([0.08, 0.09, 0.10, 0.085, 0.095])
    assert judge(higher, lower, "test_ece").outcome == REPRODUCED  # the treatment's ECE is lower: better
    assert judge(lower, higher, "test_ece").outcome == CONTRADICTED
    assert judge(higher, lower, "test_nll").lower_is_better


def test_minimal_detectable_effect_matches_a_hand_computed_value():
    # differences -0.01, 0, 0.01, 0.02, 0.03: sd 0.0158114; (t(0.975, 4) 2.776445 + t(0.8, 4) 0.940965) / sqrt(5)
    verdict = judge(by_seed([0.5] * 5), by_seed([0.49, 0.50, 0.51, 0.52, 0.53]), "test_acc")
    assert verdict.outcome == NOT_REPRODUCED
    assert verdict.mde == pytest.approx(3.717410 * 0.0158114 / 2.236068, rel=1e-5)


def test_identical_differences_give_a_zero_width_interval():
    verdict = judge(by_seed(BASELINE), by_seed([b + 0.01 for b in BASELINE]), "test_acc")
    assert verdict.outcome == REPRODUCED and verdict.ci_low == verdict.ci_high == pytest.approx(0.01)
    assert verdict.p_value is None and verdict.mde == pytest.approx(0.0, abs=1e-12)


def test_only_seeds_of_both_arms_are_paired_and_two_are_needed():
    verdict = judge({0: 0.9, 1: 0.91, 2: 0.92}, {1: 0.95, 2: 0.97, 3: 0.99}, "test_acc")
    assert verdict.seeds == (1, 2) and verdict.effect == pytest.approx(0.045)
    with pytest.raises(ReportedError, match="1 seed pairs completed, at least 2 needed"):
        judge({0: 0.9, 1: 0.9}, {1: 0.95, 2: 0.97}, "test_acc")


def synthetic_sweep(root, values: dict, failed: tuple = ()):
    """The sweep directory of the tiny card, as the real sweep lays it out: job k in root/k, sweep.json."""
    plan = make_plan(load_card(str(TINY_CARD)), "quick", root, [])
    jobs = []
    for number, (seed, arm) in enumerate((seed, arm) for seed in SEEDS for arm in ("baseline", "treatment")):
        status = "failed" if (arm, seed) in failed else "completed"
        regularizer = {} if arm == "baseline" else {"label_smoothing": {"eps": 0.2}}
        write_run(plan.sweep_dir / str(number), seed=seed, metrics=acc_metrics(values[arm][seed]),
                  regularizer=regularizer, status=status)
        jobs.append({"job": number, "overrides": [f"seed={seed}", f"+arm={arm}", "trainer.max_epochs=1"],
                     "status": status, "run_dir": str(number), "error": "boom" if status == "failed" else None})
    (plan.sweep_dir / "sweep.json").write_text(json.dumps({"jobs": jobs}))
    return plan


@pytest.mark.parametrize(("shift", "outcome"), [(0.02, REPRODUCED), (-0.02, CONTRADICTED), (0.0, NOT_REPRODUCED)])
def test_verdict_from_synthetic_run_directories(tmp_path, shift, outcome):
    noise = [0.001, -0.002, 0.0015, 0.0, -0.001]
    treatment = [b + shift + e for b, e in zip(BASELINE, noise)]
    plan = synthetic_sweep(tmp_path, {"baseline": by_seed(BASELINE), "treatment": by_seed(treatment)})
    results = read_results(plan, "test_acc")
    assert results.values["treatment"] == pytest.approx(by_seed(treatment))
    assert judge(results.values["baseline"], results.values["treatment"], "test_acc").outcome == outcome
    assert results.wall_time_s == pytest.approx(10 * 12.3)  # the runs' metrics.json wall_time_s, summed


def test_a_job_that_did_not_complete_is_reported_and_nothing_is_judged(tmp_path):
    plan = synthetic_sweep(tmp_path, {"baseline": by_seed(BASELINE), "treatment": by_seed(BASELINE)},
                           failed=(("treatment", 3),))
    with pytest.raises(ReportedError, match=r"1 of 10 jobs .* did not complete \(treatment seed 3: job 7 failed "
                                            r"\(boom\)\); relaunch the same command to resume them"):
        read_results(plan, "test_acc")


def test_a_metric_the_runs_lack_is_named_with_the_available_ones(tmp_path):
    plan = synthetic_sweep(tmp_path, {"baseline": by_seed(BASELINE), "treatment": by_seed(BASELINE)})
    with pytest.raises(UserError, match="metric='balanced_acc' is not a metric of the runs; available: best_epoch"):
        read_results(plan, "balanced_acc")
