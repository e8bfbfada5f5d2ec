"""DropBlock against its paper (Ghiasi et al. 2018: eq. 1, Algorithm 1, the valid seed region, the linear ramp),
timm's drop_block_2d where the semantics agree, and the EuroSAT paper's depth-progressive rates."""
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from timm.layers.drop import drop_block_2d

from regbench.backbones import build_backbone
from regbench.specs.backbones import BACKBONE_TRAITS
from regbench.specs.run_checks import regularizer_run_check
from regbench.run.module import ClassifierModule
from regbench.errors import UserError
from regbench.regularizers import Regularizer, TrainProgress, build_regularizers, create_regularizer
from regbench.regularizers.dropblock import (DropBlock2d, blocks_from_seeds, drop_block, schedule_factor,
                                             seed_probability, stage_rates)

PAPER = {"rate": 0.1, "block_size": 7, "stages": "all", "depth_rule": "uniform", "schedule": "ramp",
         "seed_region": "valid", "share_mask_across_channels": False}
BACKBONES = {"convnet": {"widths": [4, 8, 8]}, "resnet18": {"width": 4}, "preact_resnet18": {"width": 4},
             "wrn16_4": {"widen_factor": 1}}


def dropblock(**overrides):
    return create_regularizer("dropblock", **{**PAPER, **overrides})


def backbone(name: str):
    return build_backbone({"name": name, **BACKBONES[name]}, {"name": "batchnorm"}, (1, 16, 16), 3)


def slots_by_stage(model) -> list[list]:
    return [[block.drop_block for block in stage] for stage in model.stage_blocks()]


def progress(step: int, total_steps: int) -> TrainProgress:
    return TrainProgress(epoch=0, max_epochs=1, epoch_finished=False, step=step, total_steps=total_steps,
                         train_batches=[])


# --- the mask ---------------------------------------------------------------------------------------------------
def test_seed_probability_is_the_papers_eq_1():
    # gamma = (1 - keep_prob) / block_size^2 * feat_size^2 / (feat_size - block_size + 1)^2
    assert seed_probability(0.1, (7, 7), 14, 14) == pytest.approx(0.1 / 49 * 196 / 64)
    assert seed_probability(0.2, (3, 5), 8, 10) == pytest.approx(0.2 / 15 * 80 / (6 * 6))
    assert seed_probability(0.3, (1, 1), 5, 5) == pytest.approx(0.3)  # block_size 1: dropout


def hand_blocks(seeds, kh, kw, height, width, offset_h, offset_w):
    """Loops over the seeds: seed (i, j) zeroes rows i - offset_h .. + kh - 1, clipped to the map."""
    blocked = torch.zeros(height, width)
    for i, j in seeds:
        blocked[max(0, i - offset_h):max(0, i - offset_h + kh), max(0, j - offset_w):max(0, j - offset_w + kw)] = 1
    return blocked


@pytest.mark.parametrize("kh,kw", [(3, 3), (4, 4), (2, 3)])
def test_valid_region_seeds_grow_into_whole_blocks_inside_the_map(kh, kw):
    height, width = 9, 10
    seeds = torch.zeros(1, 1, height - kh + 1, width - kw + 1)
    places = [(0, 0), (height - kh, width - kw), (0, width - kw)]  # corners of the valid region
    for i, j in places:
        seeds[0, 0, i, j] = 1
    blocked = blocks_from_seeds(seeds, (kh, kw), "valid")
    assert blocked.shape == (1, 1, height, width)
    torch.testing.assert_close(blocked[0, 0], hand_blocks(places, kh, kw, height, width, 0, 0))
    assert blocked.sum() == len(places) * kh * kw  # the three blocks do not overlap: each is whole


@pytest.mark.parametrize("k", [3, 4])
def test_whole_region_seeds_are_block_centres_clipped_at_the_border(k):
    seeds = torch.zeros(1, 1, 9, 9)
    places = [(0, 0), (4, 6)]
    for i, j in places:
        seeds[0, 0, i, j] = 1
    blocked = blocks_from_seeds(seeds, (k, k), "whole")
    # Centred: rows i - k // 2 .. i - k // 2 + k - 1 (an even block reaches one further up and left).
    torch.testing.assert_close(blocked[0, 0], hand_blocks(places, k, k, 9, 9, k // 2, k // 2))


@pytest.mark.parametrize("block_size", [3, 4, 7])
@pytest.mark.parametrize("shared", [True, False])
def test_whole_region_is_timms_drop_block_2d_on_the_same_random_numbers(block_size, shared):
    x = torch.randn(4, 5, 6, 9)  # block 7 is clipped to the 6-row map, as timm does
    torch.manual_seed(3)
    ours = drop_block(x, 0.3, block_size, "whole", shared)
    torch.manual_seed(3)
    timms = drop_block_2d(x, 0.3, block_size, couple_channels=shared)
    assert torch.equal(ours, timms)


def whole_blocks_only(dropped: torch.Tensor, k: int) -> bool:
    """Whether every dropped unit lies in some all-dropped k x k square inside the map."""
    full_windows = -F.max_pool2d(-dropped, k, stride=1)  # 1 where the k x k window starting there is all dropped
    return torch.equal(blocks_from_seeds(full_windows, (k, k), "valid"), dropped)


def test_only_the_valid_region_keeps_every_block_inside_the_map():
    # The paper samples seeds only where a block fits; timm samples them anywhere and clips the blocks.
    x = torch.ones(64, 8, 10, 10)
    torch.manual_seed(0)
    valid = (drop_block(x, 0.2, 5, "valid") == 0).float()
    torch.manual_seed(0)
    whole = (drop_block(x, 0.2, 5, "whole") == 0).float()
    assert whole_blocks_only(valid, 5)
    assert not whole_blocks_only(whole, 5)


def expected_drop_fraction(rate: float, k: int, side: int) -> float:
    """Exact E[dropped share] with valid-region seeds: unit u is kept iff none of the n_u seeds whose block
    covers it fires, so E = mean_u 1 - (1 - gamma)^n_u."""
    gamma = seed_probability(rate, (k, k), side, side)
    covering = F.conv2d(F.pad(torch.ones(1, 1, side - k + 1, side - k + 1), [k - 1] * 4), torch.ones(1, 1, k, k))
    return (1 - (1 - gamma) ** covering).mean().item()


@pytest.mark.parametrize("rate,k", [(0.1, 5), (0.25, 3), (0.1, 1)])
def test_dropped_share_matches_the_target_rate_within_sampling_error(rate, k):
    torch.manual_seed(0)
    x = torch.ones(16, 16, 64, 64)
    dropped = (drop_block(x, rate, k) == 0).float().mean().item()
    expected = expected_drop_fraction(rate, k, 64)
    # ~gamma (60x60) seeds per map; the share's sampling sd is about sqrt(seeds) * k^2 / units.
    seeds = 256 * seed_probability(rate, (k, k), 64, 64) * (64 - k + 1) ** 2
    assert abs(dropped - expected) < 4 * math.sqrt(seeds) * k * k / x.numel()
    assert abs(dropped - rate) < 0.15 * rate  # eq. 1 ignores overlaps and borders: about `rate`, not exactly


def test_kept_units_are_rescaled_by_count_over_count_ones():
    torch.manual_seed(1)
    x = torch.ones(8, 4, 12, 12)
    out = drop_block(x, 0.3, 3)
    kept = out != 0
    assert torch.allclose(out[kept], torch.full_like(out[kept], x.numel() / kept.sum().item()))
    assert out.sum().item() == pytest.approx(x.numel(), rel=1e-5)  # Algorithm 1: A * count(M) / count_ones(M)


def test_a_mask_per_feature_map_or_one_shared_by_all_channels():
    x = torch.ones(4, 16, 10, 10)
    torch.manual_seed(0)
    shared = drop_block(x, 0.3, 3, share_mask_across_channels=True) == 0
    assert torch.equal(shared, shared[:, :1].expand_as(shared))
    per_map = drop_block(x, 0.3, 3) == 0
    assert not torch.equal(per_map, per_map[:, :1].expand_as(per_map))


def test_a_block_as_large_as_the_map_drops_whole_feature_maps():
    torch.manual_seed(0)
    out = drop_block(torch.ones(64, 32, 3, 3), 0.5, 7)  # clipped to 3x3: one seed place, SpatialDropout
    per_map = (out == 0).flatten(2)
    assert torch.equal(per_map.all(dim=2), per_map.any(dim=2))
    assert 0.4 < per_map.all(dim=2).float().mean().item() < 0.6


def test_dropblock_layer_is_the_identity_in_evaluation_and_at_rate_zero():
    layer = DropBlock2d(stage_rate=0.5, rate=0.5, block_size=3, seed_region="valid", share_mask_across_channels=False)
    x = torch.randn(2, 3, 8, 8)
    layer.eval()
    assert layer(x) is x
    layer.train()
    assert not torch.equal(layer(x), x)
    layer.rate = 0.0
    assert layer(x) is x


# --- rates by depth and over training ---------------------------------------------------------------------------
def test_uniform_rates_are_the_same_in_every_chosen_stage():
    assert stage_rates(0.1, [3, 4], 4, "uniform") == {3: 0.1, 4: 0.1}


def test_linear_rates_are_the_eurosat_papers_five_to_twenty_percent_by_depth():
    # Vir (2025), official code: stages 1..4 drop 0.05, 0.10, 0.15, 0.20.
    assert stage_rates(0.2, [1, 2, 3, 4], 4, "linear") == pytest.approx({1: 0.05, 2: 0.1, 3: 0.15, 4: 0.2})
    assert stage_rates(0.3, [2, 3], 3, "linear") == pytest.approx({2: 0.2, 3: 0.3})  # depth within the backbone


def test_the_ramp_grows_the_rate_linearly_from_zero_over_training():
    assert [schedule_factor("ramp", step, 200) for step in (0, 50, 100, 200)] == [0.0, 0.25, 0.5, 1.0]
    assert [schedule_factor("constant", step, 200) for step in (0, 50, 200)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_dropblock_goes_into_the_chosen_stages_of_every_cnn_backbone(name):
    model = backbone(name)
    stages = len(model.stage_blocks())
    assert stages == BACKBONE_TRAITS[name].conv_stages({**BACKBONES[name], "widths": [4, 8, 8]})
    chosen = [stages - 1, stages]
    model = dropblock(stages=chosen, depth_rule="linear", rate=0.3).wrap_model(model)
    for stage, slots in enumerate(slots_by_stage(model), start=1):
        assert len(slots) >= 1
        for slot in slots:
            if stage in chosen:
                assert isinstance(slot, DropBlock2d) and slot.stage_rate == pytest.approx(0.3 * stage / stages)
            else:
                assert isinstance(slot, torch.nn.Identity)


def test_the_schedule_sets_every_layer_per_step_and_per_depth():
    reg = dropblock(rate=0.2, depth_rule="linear")
    model = reg.wrap_model(backbone("resnet18"))
    layers = [slot for stage in slots_by_stage(model) for slot in stage]
    assert [layer.rate for layer in layers] == [0.0] * 8  # the ramp starts at 0
    reg.on_train_batch_end(model, progress(30, 120))
    assert [layer.rate for layer in layers] == pytest.approx([0.2 * s / 4 * 0.25 for s in (1, 1, 2, 2, 3, 3, 4, 4)])
    reg.on_train_batch_end(model, progress(120, 120))
    assert [layer.rate for layer in layers] == pytest.approx([0.2 * s / 4 for s in (1, 1, 2, 2, 3, 3, 4, 4)])
    constant = dropblock(rate=0.2, schedule="constant")
    model = constant.wrap_model(backbone("resnet18"))
    assert all(slot.rate == 0.2 for stage in slots_by_stage(model) for slot in stage)


def test_dropblock_acts_on_the_branch_after_its_first_norm_activation_in_training_only():
    reg = dropblock(rate=0.3, block_size=3, schedule="constant")
    block = reg.wrap_model(backbone("resnet18")).stage_blocks()[0][0]
    x = torch.randn(8, 4, 16, 16)
    block.train()
    torch.manual_seed(0)
    out = block(x)
    torch.manual_seed(0)
    branch = block.norm2(block.conv2(drop_block(block.norm1(block.conv1(x)), 0.3, 3)))
    torch.testing.assert_close(out, torch.relu(branch + block.shortcut(x)))
    block.eval()
    torch.testing.assert_close(block(x), torch.relu(block.norm2(block.conv2(block.norm1(block.conv1(x))))
                                                     + block.shortcut(x)))


def test_the_wrapped_network_evaluates_as_the_plain_one():
    torch.manual_seed(0)
    plain = backbone("preact_resnet18").eval()
    torch.manual_seed(0)
    wrapped = dropblock(schedule="constant", rate=0.5).wrap_model(backbone("preact_resnet18")).eval()
    x = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(wrapped(x), plain(x))


# --- refusals ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value,message", [
    ("rate", 1.0, r"regularizer\.dropblock\.rate=1\.0 is invalid: must be in \[0, 1\)"),
    ("block_size", 0, r"regularizer\.dropblock\.block_size=0 is invalid"),
    ("stages", [3, 3], r"regularizer\.dropblock\.stages=\[3, 3\] is invalid: must be 'all' or a list of distinct"),
    ("stages", "last", r"regularizer\.dropblock\.stages='last' is invalid"),
    ("depth_rule", "exp", r"regularizer\.dropblock\.depth_rule='exp' is invalid: must be one of uniform, linear"),
    ("schedule", "cosine", r"regularizer\.dropblock\.schedule='cosine' is invalid: must be one of ramp, constant"),
    ("seed_region", "edge", r"regularizer\.dropblock\.seed_region='edge' is invalid: must be one of valid, whole"),
    ("share_mask_across_channels", "yes",
     r"regularizer\.dropblock\.share_mask_across_channels='yes' is invalid: must be true or false"),
])
def test_bad_values_are_one_line_errors(key, value, message):
    with pytest.raises(UserError, match=f"^{message}"):
        build_regularizers({"dropblock": {**PAPER, key: value}}, seed=0)


@pytest.mark.parametrize("config,message", [
    ({"name": "resnet18"}, r"^regularizer\.dropblock\.stages=\[3, 5\]: backbone=resnet18 has no stage 5; "
                           r"allowed: 'all' or stage numbers 1\.\.4$"),
    ({"name": "convnet", "widths": [8, 8]}, r"backbone=convnet has no stage 3; allowed: 'all' or stage numbers 1\.\.2"),
    ({"name": "mlp"}, r"^regularizer=dropblock needs a backbone with convolutional stages .*backbone=mlp has none"),
    ({"name": "vit_tiny"}, r"backbone=vit_tiny has none"),
])
def test_stages_the_backbone_lacks_and_backbones_without_conv_stages_are_refused(config, message):
    with pytest.raises(UserError, match=message):
        build_regularizers({"dropblock": {**PAPER, "stages": [3, 5]}}, seed=0, backbone=config)


def test_rate_zero_is_reported_inactive():
    from regbench.runshape import RunShape

    shape = RunShape(image_shape=(1, 8, 8), train_images=100, batch_size=10, world_size=1, max_epochs=1)
    assert [i.key for i in regularizer_run_check("dropblock", {**PAPER, "rate": 0.0}, shape)] == ["rate"]
    assert regularizer_run_check("dropblock", PAPER, shape) == []


# --- the schedule inside a real training loop -------------------------------------------------------------------
class Digitsish(L.LightningDataModule):
    """12 random 16x16 images in batches of 4: 3 steps per epoch."""

    batch_size, image_shape = 4, (1, 16, 16)

    def train_dataloader(self):
        images, labels = torch.randn(12, *self.image_shape), torch.arange(12) % 3
        return DataLoader(TensorDataset(images, labels, torch.arange(12)), batch_size=self.batch_size)


class RatesSeen(Regularizer):
    """Records the rate of the last DropBlock layer at each training step."""

    def __init__(self):
        self.rates = []

    def mix_batch(self, images, targets, index):
        self.rates.append(self.layer.rate)
        return images, targets


def test_the_ramp_follows_the_optimizer_steps_of_a_real_training_run():
    reg, seen = dropblock(rate=0.3), RatesSeen()
    sgd = {"name": "sgd", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.0, "nesterov": False}
    module = ClassifierModule(backbone("convnet"), [reg, seen], 3, sgd, {"name": "constant", "warmup_epochs": 0})
    seen.layer = module.model.stage_blocks()[-1][0].drop_block
    trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(module, datamodule=Digitsish())
    # Step t of 6 trains with the rate set after step t - 1: 0.3 * (t - 1) / 6.
    assert seen.rates == pytest.approx([0.3 * step / 6 for step in range(6)])
