"""Weight Compander through the real CLI on digits: a run whose best.ckpt loads as the plain network, the learnable
arsinh preset, a killed run that resumes to the uninterrupted result, and stacks refused before a run directory."""
from __future__ import annotations

import signal
import time

import pytest
import torch
from omegaconf import OmegaConf
from run_dirs import completed_metrics

from regbench.backbones import build_backbone
from regbench.regularizers import build_regularizers
from regbench.regularizers.compander import plain_state_dict

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none"]


def test_a_run_trains_and_its_best_checkpoint_loads_as_the_plain_network(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[weight_compander]", "trainer.max_epochs=2", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = completed_metrics(tmp_path / "run")
    assert payload["components"]["regularizer"] == "weight_compander" and "best_test_acc" in payload["metrics"]
    cfg = OmegaConf.to_container(OmegaConf.load(tmp_path / "run" / "config.yaml"), resolve=False)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=False)
    state = checkpoint["state_dict"]
    # The conv/linear v are in their own group: no decay of their own, the configured decay put on Psi(v).
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    assert [(g["weight_decay"], g.get("decay_on_psi")) for g in groups if g["params"]] == [(0.0, None), (0.0, 5e-4)]

    def backbone():
        return build_backbone(cfg["backbone"], cfg["norm"], (1, 8, 8), 10)

    plain = backbone().eval()
    plain.load_state_dict(plain_state_dict(state))
    reg, = build_regularizers(cfg["regularizer"], seed=0, backbone=cfg["backbone"], run=cfg)
    companded = reg.wrap_model(backbone()).eval()
    companded.load_state_dict({key[len("model."):]: value for key, value in state.items() if key.startswith("model.")})
    images = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(plain(images), companded(images), atol=1e-5)
    # digits with the convnet is not in Table I: (0.7, 0.7).
    head = "model.head.parametrizations.weight.0"
    assert (state[f"{head}.a"].item(), state[f"{head}.b"].item()) == pytest.approx((0.7, 0.7))


def test_the_learnable_arsinh_preset_trains(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=weight_compander", "regularizer.weight_compander.function=arsinh",
                        "regularizer.weight_compander.learnable=true", "trainer.max_epochs=1", *TINY,
                        "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert completed_metrics(tmp_path / "run")["exp_name"] == "weight_compander"
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    learned_a = [float(value) for key, value in state.items() if key.endswith("parametrizations.weight.0.a")]
    assert len(learned_a) >= 2 and all(a != 0.5 for a in learned_a)


def test_a_killed_run_resumes_to_the_uninterrupted_result(run_regbench, start_regbench, tmp_path):
    run = ["regularizer=[weight_compander]", "trainer.max_epochs=3", *TINY]
    reference = run_regbench("train", *run, "hydra.run.dir=reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = start_regbench("train", *run, "hydra.run.dir=killed")
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists():
        assert killed.poll() is None, killed.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    relaunch = run_regbench("train", *run, "hydra.run.dir=killed")
    assert relaunch.returncode == 0, relaunch.stderr[-2000:]
    resumed = completed_metrics(tmp_path / "killed")
    assert [attempt["status"] for attempt in resumed["attempts"]] == ["killed"]
    assert resumed["metrics"] == completed_metrics(tmp_path / "reference")["metrics"]


@pytest.mark.parametrize("override,message", [
    ("optim=adamw", "regularizer=weight_compander needs optim=sgd"),
    ("norm=ws_batchnorm", "regularizer=weight_compander cannot be stacked with norm=ws_batchnorm"),
    ("regularizer=[ema,weight_compander]", "regularizer=weight_compander cannot be stacked with ema"),
    ("regularizer.weight_compander.a=-1", "regularizer.weight_compander.a=-1 is invalid: must be a number > 0"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, override, message):
    extra = [] if override.startswith("regularizer=") else ["regularizer=[weight_compander]"]
    done = run_regbench("train", *extra, override, *TINY, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
