"""Policy Gradient-Driven Noise Mask through the real CLI on digits: one epoch of masked pre-training then one of
fine-tuning; the last checkpoint is in the fine-tuning phase, keeps the policy and its optimizer for a resumed run, and
its classifier loads as the plain network; bad values and stacks are refused before a run directory exists."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from run_dirs import completed_metrics

from regbench.backbones import build_backbone
from regbench.regularizers import build_regularizers
from regbench.regularizers.noise_mask import plain_state_dict

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none"]
POLICY_PREFIX = "regularizer_state.noise_mask."


def test_it_pretrains_then_fine_tunes_and_its_checkpoint_loads_as_the_plain_network(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[noise_mask]", "trainer.max_epochs=2",
                        "regularizer.noise_mask.pretrain_epochs=1", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = completed_metrics(tmp_path / "run")
    assert payload["components"]["regularizer"] == "noise_mask" and payload["inactive"] == []
    cfg = OmegaConf.to_container(OmegaConf.load(tmp_path / "run" / "config.yaml"), resolve=False)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]

    extra = state[POLICY_PREFIX + "_extra_state"]
    assert extra["epochs_done"] == 2 and extra["policy_optimizer"]["state"]  # the policy was trained
    reg, = build_regularizers(cfg["regularizer"], seed=0, backbone=cfg["backbone"], run=cfg)
    reg.load_state_dict({key[len(POLICY_PREFIX):]: value for key, value in state.items()
                         if key.startswith(POLICY_PREFIX)})
    assert not reg.pretraining  # a run resumed from it would go on fine-tuning

    plain = build_backbone(cfg["backbone"], cfg["norm"], (1, 8, 8), 10)
    plain.load_state_dict(plain_state_dict(state))  # strict: exactly the plain network's keys


def test_the_preset_pretrains_half_of_the_epochs(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=noise_mask", "trainer.max_epochs=2",
                        "regularizer.noise_mask.baseline=batch_mean", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = completed_metrics(tmp_path / "run")
    assert payload["exp_name"] == "noise_mask" and payload["components"]["regularizer"] == "noise_mask"
    assert payload["inactive"] == []  # 0.5 of 2 epochs: one epoch masked, one fine-tuned


@pytest.mark.parametrize("overrides,message", [
    (["regularizer.noise_mask.grid=9"], "regularizer.noise_mask.grid=9 is invalid: must be at most the image side 8"),
    (["regularizer.noise_mask.pretrain_epochs=2"],
     "regularizer.noise_mask.pretrain_epochs=2 is invalid: must leave epochs of trainer.max_epochs=2"),
    (["regularizer.noise_mask.baseline=critic"],
     "regularizer.noise_mask.baseline='critic' is invalid: allowed: none, batch_mean"),
    (["regularizer=[mixup,noise_mask]"], "regularizer=noise_mask cannot be stacked with mixup"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, overrides, message):
    regularizer = [] if any(o.startswith("regularizer=") for o in overrides) else ["regularizer=[noise_mask]"]
    done = run_regbench("train", *regularizer, *overrides, "trainer.max_epochs=2", *TINY, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
