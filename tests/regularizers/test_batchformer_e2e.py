"""BatchFormer through the real CLI on digits: the preset trains, its best.ckpt keeps the encoder (to resume) and
loads as the plain network, it stacks with mixup and EMA, and nonsense is refused before a run directory."""
from __future__ import annotations


import pytest
import torch
from omegaconf import OmegaConf
from run_dirs import completed_metrics

from regbench.backbones import build_backbone
from regbench.regularizers import build_regularizers
from regbench.regularizers.batchformer import plain_state_dict

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none"]


def test_the_preset_trains_and_its_best_checkpoint_loads_as_the_plain_network(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=batchformer", "trainer.max_epochs=2", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = completed_metrics(tmp_path / "run")
    assert payload["exp_name"] == "batchformer" and payload["components"]["regularizer"] == "batchformer"
    cfg = OmegaConf.to_container(OmegaConf.load(tmp_path / "run" / "config.yaml"), resolve=False)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=False)
    state = checkpoint["state_dict"]
    encoder_keys = [key for key in state if key.startswith("model.head.encoder.")]
    assert "model.head.encoder.self_attn.in_proj_weight" in encoder_keys
    # Every trained parameter, the encoder's included, has its momentum in the checkpoint's optimizer state.
    saved = checkpoint["optimizer_states"][0]["state"]
    assert len(saved) == sum(len(group["params"]) for group in checkpoint["optimizer_states"][0]["param_groups"])

    def backbone():
        return build_backbone(cfg["backbone"], cfg["norm"], (1, 8, 8), 10)

    plain = backbone().eval()
    plain.load_state_dict(plain_state_dict(state))  # strict: exactly the plain network's keys
    reg, = build_regularizers(cfg["regularizer"], seed=0, backbone=cfg["backbone"], run=cfg)
    wrapped = reg.wrap_model(backbone()).eval()
    wrapped.load_state_dict({key[len("model."):]: value for key, value in state.items() if key.startswith("model.")})
    images = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(plain(images), wrapped(images))


def test_it_stacks_with_mixup_and_ema(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[mixup,batchformer,ema]", "trainer.max_epochs=1", *TINY,
                        "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert completed_metrics(tmp_path / "run")["components"]["regularizer"] == "mixup+batchformer+ema"


@pytest.mark.parametrize("overrides,message", [
    (["regularizer=[batchformer,multisample_dropout]"],
     "regularizer=batchformer cannot be stacked with multisample_dropout: both widen the training logits"),
    (["regularizer=[batchformer,coteaching]", "regularizer.coteaching.forget_rate=0.2"],
     "regularizer=batchformer cannot be stacked with coteaching"),
    (["regularizer=[batchformer,weight_compander]"], "regularizer=batchformer cannot be stacked with weight_compander"),
    (["regularizer=[batchformer]", "regularizer.batchformer.num_heads=3"],
     "regularizer.batchformer.num_heads=3 is invalid: must divide the backbone's feature width 8"),
    (["regularizer=[batchformer]", "regularizer.batchformer.dropout=1.5"],
     "regularizer.batchformer.dropout=1.5 is invalid: must be in [0, 1)"),
    (["regularizer=[batchformer]", "regularizer.batchformer.ffn_dim=0"],
     "regularizer.batchformer.ffn_dim=0 is invalid: must be a positive integer, or null"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, overrides, message):
    done = run_regbench("train", *overrides, *TINY, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
