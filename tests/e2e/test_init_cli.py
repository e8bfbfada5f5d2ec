"""`regbench train init.from=...` through the real CLI on a tiny budget: a run fine-tuned from another run's
directory records its source in metrics.json and W&B; a new head for another class count with frozen layers and
frozen norm statistics keeps exactly the source's frozen tensors; Nested Co-teaching's stage 2 gives each network
of the pair its own source; a bad source is one line, exit 2, before any run directory exists."""
from __future__ import annotations

import pytest
import torch

from run_dirs import completed_metrics

pytestmark = pytest.mark.slow
TINY = ("trainer.max_epochs=1", "backbone.widths=[8,16]")


@pytest.fixture
def source_run(run_regbench, tmp_path):
    result = run_regbench("train", *TINY, "logger=csv", "hydra.run.dir=source")
    assert result.returncode == 0, result.stderr
    return tmp_path / "source"


def network(run_dir, name="best"):
    state = torch.load(run_dir / "checkpoints" / f"{name}.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {key[len("model."):]: value for key, value in state.items() if key.startswith("model.")}


def test_a_run_starts_from_another_runs_best_checkpoint_and_records_its_source(run_regbench, offline_wandb_run,
                                                                               source_run, tmp_path):
    result = run_regbench("train", *TINY, "init.from=source", "hydra.run.dir=tuned")
    assert result.returncode == 0, result.stderr
    init = completed_metrics(tmp_path / "tuned")["init"]
    source, = init["sources"]
    assert source["path"] == str(source_run / "checkpoints" / "best.ckpt") and source["checkpoint"] == "best"
    assert source["source_config_hash"] == completed_metrics(source_run)["config_hash"]
    assert source["loaded"] == len(network(source_run)) and source["skipped"] == {} and source["missing"] == []
    assert init["resumed_own_checkpoint"] is False
    config = offline_wandb_run(tmp_path / "tuned" / "wandb").run["config"]["update"]
    assert config["init.from"] == "source" and config["init.sources"][0]["path"] == source["path"]


def test_a_new_head_with_frozen_layers_and_statistics_keeps_the_sources_frozen_tensors(run_regbench, source_run,
                                                                                       tmp_path):
    result = run_regbench("train", *TINY, "data=synthetic", "logger=csv", "init.from=source/last",
                          "init.reset_head=true", "init.freeze=[features.0]", "init.freeze_bn_stats=true",
                          "hydra.run.dir=tuned")
    assert result.returncode == 0, result.stderr
    init = completed_metrics(tmp_path / "tuned")["init"]
    assert init["sources"][0]["checkpoint"] == "last" and init["frozen_parameters"] == 1
    assert set(init["sources"][0]["skipped"]) == {"head.weight", "head.bias"}
    source, tuned = network(source_run, "last"), network(tmp_path / "tuned", "last")
    assert tuned["head.weight"].shape == (4, 16) and source["head.weight"].shape == (10, 16)
    assert torch.equal(tuned["features.0.weight"], source["features.0.weight"])
    for statistic in ("running_mean", "running_var"):
        assert torch.equal(tuned[f"features.1.0.{statistic}"], source[f"features.1.0.{statistic}"])
    assert not torch.equal(tuned["features.3.weight"], source["features.3.weight"])  # trained on


def test_nested_coteachings_stage_two_gives_each_network_of_the_pair_its_source(run_regbench, source_run, tmp_path):
    result = run_regbench("train", *TINY, "+exp=nested_coteaching", "logger=csv",
                          "init.from=[source/best,source/last]", "init.freeze_bn_stats=true",
                          "init.freeze=[features.0]", "hydra.run.dir=pair")
    assert result.returncode == 0, result.stderr
    sources = completed_metrics(tmp_path / "pair")["init"]["sources"]
    assert [source["checkpoint"] for source in sources] == ["best", "last"]
    pair, source = network(tmp_path / "pair", "last"), network(source_run, "last")
    for net in (0, 1):  # frozen, so still the source's: the peer was loaded, not freshly initialized
        assert torch.equal(pair[f"nets.{net}.features.0.weight"], source["features.0.weight"])
        assert torch.equal(pair[f"nets.{net}.features.1.0.running_var"], source["features.1.0.running_var"])


@pytest.mark.parametrize("override, message", [
    ("init.from=nowhere", "init.from='nowhere' is invalid: no such file or directory"),
    ("init.from=source", "init.from='source' does not fit this model: features.0.weight has shape (8, 1, 3, 3) in "
                         "the source and (4, 1, 3, 3) here; set init.strict=false to load only the matching keys"),
])
def test_a_bad_source_is_one_line_and_exit_2_before_any_run_directory(run_regbench, source_run, tmp_path,
                                                                      override, message):
    result = run_regbench("train", "trainer.max_epochs=1", "backbone.widths=[4,16]", override, "hydra.run.dir=run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"regbench train: error: {message}"
    assert not (tmp_path / "run").exists()
