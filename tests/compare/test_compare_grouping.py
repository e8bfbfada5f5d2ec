import pytest
from compare_rundirs import acc_metrics, write_run

from regbench.compare.grouping import (
    check_keys, detect_grouping_keys, find_baselines, group_runs, parse_baseline, settings_of,
)
from regbench.compare.runs import load_run_dirs
from regbench.errors import UserError


def load(path):
    return load_run_dirs([str(path)]).completed


def test_detects_the_regularizer_and_nothing_that_merely_differs_per_run(sweep):
    # seeds, run_dir, data.root and logger.name differ between every run, exp_name and the regularizer
    # parameters follow the regularizer: none of them may become a grouping key
    records = load(sweep["dir"])
    assert detect_grouping_keys(records) == ["regularizer"]
    groups = group_runs(records, ["regularizer"])
    assert sorted(g.values[0] for g in groups) == ["cutmix", "mixup", "none"]
    assert all(len(g.runs) == 4 for g in groups)


def test_bookkeeping_settings_are_not_settings(sweep):
    settings = settings_of(load(sweep["dir"])[0])
    assert "optim.lr" in settings and "norm" in settings
    for excluded in ("seed", "run_dir", "data.root", "logger.name", "logger.wandb"):
        assert excluded not in settings


def test_detects_two_crossed_factors(tmp_path):
    for job, (reg, norm) in enumerate([({}, "batchnorm"), ({}, "groupnorm"),
                                       ({"cutmix": {"alpha": 1.0}}, "batchnorm"),
                                       ({"cutmix": {"alpha": 1.0}}, "groupnorm")]):
        write_run(tmp_path / str(job), seed=0, metrics=acc_metrics(0.9), regularizer=reg, norm=norm)
    assert detect_grouping_keys(load(tmp_path)) == ["norm", "regularizer"]


def test_detects_a_swept_hyperparameter(tmp_path):
    for job, alpha in enumerate([0.2, 1.0]):
        write_run(tmp_path / str(job), seed=0, metrics=acc_metrics(0.9), regularizer={"cutmix": {"alpha": alpha}},
                  exp_name=f"cutmix_alpha{alpha}")
    write_run(tmp_path / "base", seed=0, metrics=acc_metrics(0.9))
    records = load(tmp_path)
    assert detect_grouping_keys(records) == ["regularizer", "regularizer.cutmix.alpha"]
    labels = sorted(g.label(detect_grouping_keys(records)) for g in group_runs(records, detect_grouping_keys(records)))
    assert labels == ["regularizer=cutmix, regularizer.cutmix.alpha=0.2",
                      "regularizer=cutmix, regularizer.cutmix.alpha=1", "regularizer=none, regularizer.cutmix.alpha=-"]


def test_exp_name_groups_only_when_nothing_else_differs(tmp_path):
    write_run(tmp_path / "a", seed=0, metrics=acc_metrics(0.9), exp_name="first_try")
    write_run(tmp_path / "b", seed=0, metrics=acc_metrics(0.9), exp_name="second_try")
    assert detect_grouping_keys(load(tmp_path)) == ["exp_name"]


def test_identical_setups_form_one_group(tmp_path):
    for seed in range(3):
        write_run(tmp_path / str(seed), seed=seed, metrics=acc_metrics(0.9))
    records = load(tmp_path)
    assert detect_grouping_keys(records) == []
    [group] = group_runs(records, [])
    assert len(group.runs) == 3 and group.label([]) == "all runs"


def test_by_accepts_components_and_config_keys(sweep):
    records = load(sweep["dir"])
    check_keys(["norm", "optim.lr"], records)
    [group] = group_runs(records, ["norm", "optim.lr"])
    assert group.values == ("batchnorm", 0.1)


def test_by_rejects_unknown_keys_listing_the_available_ones(sweep):
    with pytest.raises(UserError, match=r"'colour'.*available: .*regularizer"):
        check_keys(["colour"], load(sweep["dir"]))


def crossed_groups(tmp_path):
    for job, (reg, norm) in enumerate([({}, "batchnorm"), ({}, "groupnorm"), ({"cutmix": {}}, "batchnorm"),
                                       ({"cutmix": {}}, "groupnorm"), ({"mixup": {}}, "layernorm")]):
        write_run(tmp_path / str(job), seed=0, metrics=acc_metrics(0.9), regularizer=reg, norm=norm)
    keys = ["regularizer", "norm"]
    return keys, group_runs(load(tmp_path), keys)


def test_each_group_is_compared_with_the_baseline_of_its_own_slice(tmp_path):
    keys, groups = crossed_groups(tmp_path)
    baselines = find_baselines(groups, keys, {"regularizer": "none"})
    assert baselines[("cutmix", "groupnorm")].values == ("none", "groupnorm")
    assert baselines[("cutmix", "batchnorm")].values == ("none", "batchnorm")
    assert baselines[("none", "batchnorm")].values == ("none", "batchnorm")
    assert baselines[("mixup", "layernorm")] is None  # no unregularized layernorm run


def test_a_fully_specified_baseline_is_shared_by_all_groups(tmp_path):
    keys, groups = crossed_groups(tmp_path)
    baselines = find_baselines(groups, keys, {"regularizer": "none", "norm": "batchnorm"})
    assert {b.values for b in baselines.values()} == {("none", "batchnorm")}


def test_baseline_matching_no_group_lists_the_groups(tmp_path):
    keys, groups = crossed_groups(tmp_path)
    with pytest.raises(UserError, match=r"'regularizer=dropout' matches no group; groups: .*regularizer=cutmix"):
        find_baselines(groups, keys, {"regularizer": "dropout"})


def test_baseline_on_a_key_that_does_not_group_is_an_error(tmp_path):
    keys, groups = crossed_groups(tmp_path)
    with pytest.raises(UserError, match=r"'optim' is not a grouping key; grouping keys: regularizer, norm"):
        find_baselines(groups, keys, {"optim": "sgd"})


def test_parse_baseline():
    assert parse_baseline("regularizer=none, norm=batchnorm") == {"regularizer": "none", "norm": "batchnorm"}
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_baseline("none")


def test_seeds_that_follow_the_run_seed_are_replicates_not_groups(tmp_path):
    # `regbench train` resolves data.noise.seed and data.imbalance.seed to the run's seed: a sweep over seeds
    # must give one group per setting with every seed in it, not one group per seed
    for seed in range(3):
        for reg in ({}, {"mixup": {"alpha": 0.2}}):
            write_run(tmp_path / f"{'+'.join(reg) or 'none'}{seed}", seed=seed, metrics=acc_metrics(0.9),
                      regularizer=reg)
    records = load(tmp_path)
    assert {r.config["data"]["noise"]["seed"] for r in records} == {0, 1, 2}
    keys = detect_grouping_keys(records)
    assert keys == ["regularizer"]
    assert sorted(len(g.runs) for g in group_runs(records, keys)) == [3, 3]


def test_a_seed_key_can_still_be_named_with_by(tmp_path):
    for seed in range(2):
        write_run(tmp_path / str(seed), seed=seed, metrics=acc_metrics(0.9))
    records = load(tmp_path)
    check_keys(["data.noise.seed"], records)
    assert sorted(g.values for g in group_runs(records, ["data.noise.seed"])) == [(0,), (1,)]
