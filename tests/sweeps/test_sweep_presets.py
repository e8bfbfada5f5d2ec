"""Sweep and hyperparameter-search presets compose, expand to the jobs Hydra will run, and every job validates
with no degenerate or inactive component on the preset's default data."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from regbench.config.validate import validate_config
from regbench.sweeps.preflight import preflight, sweep_jobs
from regbench.errors import UserError
from regbench.sweeps.index import varying_keys

CONF = Path(__file__).resolve().parents[2] / "conf"
# preset -> (jobs, keys it varies besides the seed)
SWEEPS = {"reg_vs_baseline": (51, ["regularizer"]), "norm_grid": (48, ["norm"]),
          "noise_grid": (48, ["data.noise.rate", "regularizer"]), "projection": (24, ["optim", "optim.project"]),
          "subpopulations": (24, ["data.spurious.correlation", "backbone"]),
          "soup_ingredients": (8, ["optim.lr", "data.augment.crop_padding"]),
          "crafted_folds": (6, ["data.crafted_val.fold"])}


def expand(overrides: list[str]) -> list[list[str]]:
    with initialize_config_module("regbench.conf", version_base="1.3"):
        return sweep_jobs(overrides, OverridesParser.create().parse_overrides(overrides))


def hydra_and_job(overrides: list[str]):
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        hydra_cfg = cfg.pop("hydra")
        cfg.run_dir = "unused"
    return hydra_cfg, OmegaConf.to_container(cfg, resolve=True)


def test_every_sweep_and_search_preset_is_tested():
    assert sorted(p.stem for p in (CONF / "sweep").glob("*.yaml")) == sorted(SWEEPS)
    assert sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml")) == sorted(SEARCHES)


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_preset_expands_to_valid_jobs(name):
    jobs, varied = SWEEPS[name]
    assert (CONF / "sweep" / f"{name}.yaml").read_text().startswith("# @package _global_")
    expanded = expand([f"+sweep={name}"])
    assert len(expanded) == jobs and len({tuple(job) for job in expanded}) == jobs
    hydra_cfg, cfg = hydra_and_job([f"+sweep={name}"])
    assert cfg["exp_name"] == name
    params = OmegaConf.to_container(hydra_cfg.sweeper.params)
    # The seeds repeat the same configs, so preflight composes and validates every job of one seed (a seed is a
    # number that every config takes).
    one_seed = [f"+sweep={name}", "hydra.sweeper.params.seed=0"]
    checked = preflight(one_seed, multirun=True)
    assert [job.overrides for job in checked] == expand(one_seed)
    assert len(checked) * len(str(params["seed"]).split(",")) == jobs
    # On its default data every job does what its name says: no technique degenerate or inactive.
    assert [(job.overrides, job.inactive) for job in checked if job.inactive] == []
    assert sorted(varying_keys([], params)) == sorted(varied)


def test_a_summary_baseline_may_name_any_key_where_the_sweep_varies_presets():
    preflight(["norm=batchnorm,groupnorm", "sweep_summary.baseline='norm=batchnorm'"], multirun=True, writes=False,
              builds=False)
    preflight(["+exp=baseline,mixup", "sweep_summary.baseline='regularizer=none'"], multirun=True, writes=False,
              builds=False)


def test_sweep_lists_can_be_overridden_on_the_command_line():
    jobs = expand(["+sweep=reg_vs_baseline", "hydra.sweeper.params.seed='0,1,2,3,4'"])
    assert len(jobs) == 17 * 5
    assert len(expand(["regularizer=[none],[cutmix],[cutmix,ema]", "seed=0,1"])) == 6


SEARCHES = {"cutmix_optuna": "cutmix", "label_smoothing_optuna": "label_smoothing", "elr_optuna": "elr"}


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_hparams_search_preset_tunes_its_technique_with_optuna(name):
    assert (CONF / "hparams_search" / f"{name}.yaml").read_text().startswith("# @package _global_")
    hydra_cfg, cfg = hydra_and_job([f"+hparams_search={name}"])
    assert hydra_cfg.sweeper._target_.endswith("OptunaSweeper") and str(hydra_cfg.mode) == "RunMode.MULTIRUN"
    assert list(cfg["regularizer"]) == [SEARCHES[name]] and cfg["optimized_metric"] == "best_val_acc"
    assert validate_config(cfg) == []  # the fixed part acts on its default data
    # Every searched key is a real parameter of the technique, and both ends of its interval validate.
    for key, space in hydra_cfg.sweeper.params.items():
        low, high = (float(x) for x in space[len("interval("):-1].split(","))
        for value in (low, high):
            validate_config(hydra_and_job([f"+hparams_search={name}", f"{key}={value}"])[1])


@pytest.mark.parametrize("overrides,message", [
    (["norm=batchnorm,bogus"], "norm='bogus' is not a known norm"),
    (["data.batch_size=64,0"], "data.batch_size=0 is invalid: must be an integer > 0 (in the sweep job"),
    (["+sweep=reg_vs_baseline", "regularizer.cutmix.alpha=-1"],
     "regularizer.cutmix.alpha=-1 sets a parameter of regularizer cutmix, which is not selected (regularizer=[none])"),
    (["optimized_metric=test_acc"], "optimized_metric='test_acc' is invalid"),
    (["hydra/launcher=bogus"], "hydra/launcher='bogus' is not a known hydra/launcher; allowed: basic, local,"),
    (["norm=batchnorm,groupnorm", "sweep_summary.baseline='nrom=batchnorm'"],
     "sweep_summary.baseline='nrom=batchnorm' is invalid: must be null or KEY=VALUE[,KEY=VALUE] over keys the sweep "
     "varies (norm)"),
    (["+sweep=norm_grid", "sweep_summary.baseline=batchnorm"], "sweep_summary.baseline='batchnorm' is invalid"),
    (["seed=0,1", "sweep_summary.metric=''"], "sweep_summary.metric='' is invalid: must be a metric of metrics.json"),
    # The dataset is loaded once before the sweep starts: missing files are one line, not a failure per job.
    (["seed=0,1", "data=mnist", "data.root=/no/such"], "MNIST files not found: /no/such/MNIST/raw/"
                                                       "train-images-idx3-ubyte is missing; "),
    (["seed=0", "hydra/sweeper=optuna"], "hydra/sweeper=optuna needs optimized_metric, the metric its jobs return "
                                         "(best_val_acc, val_acc, "),
])
def test_a_bad_job_fails_the_whole_sweep_before_any_job_starts(overrides, message):
    with pytest.raises(UserError, match=None) as caught:
        preflight(overrides, multirun=True)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("launcher,target", [
    ("local", "BasicLauncher"), ("local_parallel", "LocalLauncher")])
def test_launcher_presets_compose(launcher, target):
    hydra_cfg, _ = hydra_and_job([f"hydra/launcher={launcher}"])
    assert hydra_cfg.launcher._target_.endswith(target)
