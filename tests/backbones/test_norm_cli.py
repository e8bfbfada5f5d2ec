"""End to end through the CLI: representative runs, the presets, and incompatible pairs as one line (exit 2)."""
import json

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from regbench.config.validate import validate_config
from regbench.sweeps.preflight import preflight
from regbench.errors import UserError

PRESETS = ["microbatch_bn", "microbatch_gn", "microbatch_bcn_ws", "vit_pre_ln", "vit_post_ln", "vit_mix_ln",
           "vit_peri_ln", "vit_ln_scaling", "vit_crmsnorm", "vit_unified_norm"]


def train_one_epoch(run_regbench, *overrides):
    return run_regbench("train", "logger=none", "trainer.max_epochs=1", "hydra.run.dir=run", *overrides)


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose_and_validate(preset):
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"+exp={preset}", "run_dir=."])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    validate_config(resolved)
    assert resolved["exp_name"] == preset
    if preset.startswith("microbatch"):
        assert resolved["data"]["batch_size"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ["backbone.widths=[8,16]", "norm=bcn_ws", "norm.groups=4"],
    ["backbone=vit_tiny", "backbone.embed_dim=16", "backbone.depth=2", "backbone.num_heads=2", "norm.placement=peri",
     "norm=layernorm", "optim=adamw"],
    ["+exp=vit_crmsnorm", "backbone.embed_dim=16", "backbone.depth=2", "backbone.num_heads=2"],
    ["+exp=vit_unified_norm", "backbone.embed_dim=16", "backbone.depth=2", "backbone.num_heads=2",
     "norm.warmup_iters=20"],
])
def test_representative_runs_train_one_epoch(run_regbench, tmp_path, overrides):
    result = train_one_epoch(run_regbench, *overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 1


@pytest.mark.parametrize("overrides, message", [
    (["norm=powernorm", "norm.placement=peri"], "norm.placement=peri only applies to transformer backbones"),
    (["backbone=vit_tiny", "norm=groupnorm"], "norm=groupnorm with backbone=vit_tiny is not supported"),
    (["backbone=mlp", "norm=bcn_ws"], "norm=bcn_ws with backbone=mlp is not supported"),
    (["norm=crmsnorm"], "norm=crmsnorm with backbone=convnet is not supported: norm=crmsnorm is only for "
                        "backbone=vit_tiny"),
    (["+exp=vit_crmsnorm", "norm.placement=peri"], "norm.placement=peri is invalid for norm=crmsnorm: allowed: pre"),
    (["+exp=vit_unified_norm", "norm.window=1"], "norm.window=1 is invalid: must be an integer >= 2"),
])
def test_incompatible_choices_fail_preflight_in_one_line(overrides, message):
    with pytest.raises(UserError, match=message) as err:
        preflight(overrides, multirun=False)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_incompatible_pair_exits_2_with_one_line(run_regbench):
    result = train_one_epoch(run_regbench, "backbone=vit_tiny", "norm=batchnorm")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "norm=batchnorm with backbone=vit_tiny" in result.stderr
