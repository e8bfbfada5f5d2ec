"""TransMix: the attention lambda against hand-computed values, the re-weighted loss against a loss built by
hand from the model's own class attention, the CutMix special cases, refusals, and one epoch through the CLI."""
import json

import pytest
import torch

from regbench.backbones import build_backbone
from regbench.errors import UserError
from regbench.run.module import ClassifierModule
from regbench.regularizers import build_regularizers, create_regularizer, soft_cross_entropy
from regbench.regularizers.mixing import cutmix, cutmix_box
from regbench.regularizers.transmix import pasted_attention, patch_mask, transmix_lambda, transmix_targets

VIT = {"name": "vit_tiny", "embed_dim": 8, "depth": 2, "num_heads": 2, "pool": "cls"}
PARAMS = {"alpha": 1.0, "prob": 1.0, "attention_weight": 0.5, "label_smoothing": 0.1}
OPTIM = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05}
SCHED = {"name": "constant"}


def tiny_vit(**overrides):
    torch.manual_seed(0)
    return build_backbone({**VIT, **overrides}, {"name": "layernorm"}, (1, 8, 8), 4)


def transmix(seed=0, **overrides):
    return create_regularizer("transmix", seed=seed, **{**PARAMS, **overrides})


def batch(size=4):
    generator = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 1, 2, 3, 1][:size])
    return torch.randn(size, 1, 8, 8, generator=generator), torch.eye(4)[labels], torch.arange(size)


# --- the math on hand-sized tensors ----------------------------------------------------------------------------
def test_box_mask_downsamples_to_the_patches_whose_top_left_pixel_is_pasted():
    # 8x8 image, 2x2 patches -> a 4x4 grid; rows 2..5, columns 0..3 cover grid rows 1-2, columns 0-1.
    mask = patch_mask((2, 6, 0, 4), (8, 8), (4, 4))
    assert mask.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    # A box from row 3 misses grid row 1 (top-left pixel at row 2), as nearest interpolation does.
    assert patch_mask((3, 6, 0, 4), (8, 8), (4, 4)).tolist() == [0] * 8 + [1, 1, 0, 0] + [0] * 4


def test_lambda_is_the_attention_mass_on_the_pasted_patches():
    attention = torch.tensor([[0.1, 0.2, 0.3, 0.2],    # sums to 0.8: the class token kept 0.2 on itself
                              [0.25, 0.25, 0.25, 0.25]])
    mask = torch.tensor([0.0, 1.0, 0.0, 1.0])
    pasted = pasted_attention(attention, mask)
    assert torch.allclose(pasted, torch.tensor([0.4 / 0.8, 0.5]))
    area_lam = 0.5  # half of the image kept
    assert torch.allclose(transmix_lambda(area_lam, pasted, 1.0), torch.tensor([0.5, 0.5]))
    assert torch.allclose(transmix_lambda(area_lam, torch.tensor([0.9]), 1.0), torch.tensor([0.1]))
    # The paper's default: the mean of the area lambda and the attention lambda.
    assert torch.allclose(transmix_lambda(0.75, torch.tensor([0.9]), 0.5), torch.tensor([(0.75 + 0.1) / 2]))


def test_targets_are_reweighted_per_sample_against_the_reversed_partner():
    targets = torch.eye(3)
    lam = torch.tensor([0.2, 0.5, 0.9])
    expected = torch.tensor([[0.2, 0.0, 0.8],
                             [0.0, 1.0, 0.0],  # the middle sample of an odd batch is its own partner
                             [0.1, 0.0, 0.9]])
    assert torch.allclose(transmix_targets(targets, lam), expected)


def test_uniform_attention_gives_the_area_lambda_for_a_patch_aligned_box():
    mask = patch_mask((0, 4, 2, 8), (8, 8), (4, 4))  # 2 x 3 of the 4 x 4 patches
    uniform = torch.full((5, 16), 1 / 17)  # the class token's own share left out of the patches
    area_lam = 1.0 - (4 * 6) / 64
    for weight in (1.0, 0.5):
        assert torch.allclose(transmix_lambda(area_lam, pasted_attention(uniform, mask), weight),
                              torch.full((5,), area_lam))


# --- the regularizer on a real vit_tiny ------------------------------------------------------------------------
@pytest.mark.parametrize("attention_weight", [1.0, 0.5])
def test_loss_is_cross_entropy_against_targets_reweighted_by_this_forwards_class_attention(attention_weight):
    model = tiny_vit()
    reg = transmix(seed=3, attention_weight=attention_weight)
    model = reg.wrap_model(model).train()
    images, targets, index = batch()
    mixed, mixed_targets = reg.mix_batch(images, targets, index)
    # Replay the draws to know the box, the area lambda and the smoothed targets.
    replay = create_regularizer("cutmix", seed=3, alpha=1.0, prob=1.0).rng
    replay.random()
    box = cutmix_box(replay.betavariate(1.0, 1.0), 8, 8, replay)
    smoothed = 0.9 * targets + 0.1 / 4
    expected_images, area_targets, area_lam = cutmix(images, smoothed, box)
    assert torch.equal(mixed, expected_images) and torch.allclose(mixed_targets, area_targets)

    logits = model(mixed)
    attention = model.class_attention()
    mask = patch_mask(box, (8, 8), (4, 4))
    by_hand = []
    for i in range(4):  # one sample at a time, straight from the definitions
        own = 1.0 - float((attention[i] * mask).sum() / attention[i].sum())
        lam = (1 - attention_weight) * area_lam + attention_weight * own
        by_hand.append(lam * smoothed[i] + (1 - lam) * smoothed[3 - i])
    expected = soft_cross_entropy(logits, torch.stack(by_hand))
    per_sample = soft_cross_entropy(logits, mixed_targets)
    got = reg.loss(per_sample, logits, mixed_targets, index, model)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, per_sample)  # the attention moved the labels off the area lambda
    grad_got, = torch.autograd.grad(got.sum(), logits, retain_graph=True)
    grad_expected, = torch.autograd.grad(expected.sum(), logits)
    assert torch.allclose(grad_got, grad_expected, atol=1e-6)


@pytest.mark.parametrize("box", ["exact", "official"])
def test_attention_weight_zero_without_smoothing_replays_cutmix_exactly(box):
    model = tiny_vit()
    reg = transmix(seed=7, attention_weight=0.0, label_smoothing=0.0, box=box)
    model = reg.wrap_model(model).train()
    plain = create_regularizer("cutmix", seed=7, alpha=1.0, prob=1.0, box=box)
    images, targets, index = batch(5)
    for _ in range(3):
        mixed, mixed_targets = reg.mix_batch(images, targets, index)
        expected_images, expected_targets = plain.mix_batch(images, targets, index)
        assert torch.equal(mixed, expected_images) and torch.allclose(mixed_targets, expected_targets)
        logits = model(mixed)
        per_sample = soft_cross_entropy(logits, mixed_targets)
        assert torch.allclose(reg.loss(per_sample, logits, mixed_targets, index, model), per_sample, atol=1e-6)


def test_unmixed_batch_keeps_its_smoothed_targets_and_loss():
    model = tiny_vit()
    reg = transmix(prob=0.0)
    model = reg.wrap_model(model).train()
    images, targets, index = batch()
    out_images, out_targets = reg.mix_batch(images, targets, index)
    assert out_images is images and torch.allclose(out_targets, 0.9 * targets + 0.1 / 4)
    logits = model(images)
    per_sample = soft_cross_entropy(logits, out_targets)
    assert torch.equal(reg.loss(per_sample, logits, out_targets, index, model), per_sample)


def mixed_step(seed):
    """A wrapped tiny ViT after one TransMix batch: (regularizer, model, logits, mixed targets, index)."""
    reg = transmix(seed=seed)
    model = reg.wrap_model(tiny_vit()).train()
    images, targets, index = batch()
    mixed, mixed_targets = reg.mix_batch(images, targets, index)
    return reg, model, model(mixed), mixed_targets, index


def test_loss_adds_to_what_earlier_loss_hooks_returned():
    reg, model, logits, targets, index = mixed_step(seed=2)
    twin, twin_model, _, _, _ = mixed_step(seed=2)  # same weights and draws: the same box and attention
    base = soft_cross_entropy(logits, targets)
    shifted = twin.loss(base + 1.0, logits, targets, index, twin_model)
    assert torch.allclose(shifted, reg.loss(base, logits, targets, index, model) + 1.0, atol=1e-6)


def test_class_token_is_saved_and_restored_with_the_lightning_module():
    def module():
        return ClassifierModule(tiny_vit(), build_regularizers({"transmix": PARAMS}, seed=0, backbone=VIT), 4,
                                OPTIM, SCHED)
    trained = module()
    with torch.no_grad():
        trained.model.cls_token.add_(1.0)
    restored = module()
    restored.load_state_dict(trained.state_dict())
    assert torch.equal(restored.model.cls_token, trained.model.cls_token)
    images = batch()[0]
    assert torch.allclose(restored.eval()(images), trained.eval()(images))


# --- refusals --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone,message", [
    ({"name": "convnet", "widths": [8]}, "regularizer=transmix needs backbone=vit_tiny: it re-weights the CutMix "
                                         "targets by a vision transformer's class-token attention, which "
                                         "backbone=convnet does not have"),
    ({"name": "timm", "model_name": "vit_tiny_patch16_224"}, "which backbone=timm does not have"),
    ({**VIT, "pool": "mean"}, "regularizer=transmix needs backbone.pool=cls"),
])
def test_transmix_refuses_backbones_without_a_class_token_in_one_line(backbone, message):
    with pytest.raises(UserError, match=message) as err:
        build_regularizers({"transmix": PARAMS}, seed=0, backbone=backbone)
    assert "\n" not in str(err.value)


def test_wrap_model_refuses_a_network_without_class_attention():
    with pytest.raises(UserError, match="regularizer=transmix needs backbone=vit_tiny; ConvNet has no"):
        transmix().wrap_model(build_backbone({"name": "convnet", "widths": [4]}, {"name": "batchnorm"}, (1, 8, 8), 4))
    with pytest.raises(UserError, match="backbone.pool=cls"):
        transmix().wrap_model(tiny_vit(pool="mean"))


@pytest.mark.parametrize("other,message", [
    ({"cutmix": {"alpha": 1.0, "prob": 1.0}}, "transmix and cutmix both do input mixing"),
    ({"mixup": {"alpha": 0.2, "prob": 1.0}}, "transmix and mixup both do input mixing"),
    ({"cutout": {"length": 4, "n_holes": 1}}, "transmix and cutout both do regional dropout"),
    ({"label_smoothing": {"eps": 0.1}}, "transmix and label_smoothing both do label smoothing"),
])
def test_transmix_does_not_stack_with_other_mixing_erasing_or_smoothing(other, message):
    with pytest.raises(UserError, match=message):
        build_regularizers({"transmix": PARAMS, **other}, seed=0, backbone=VIT)


@pytest.mark.parametrize("key,value,allowed", [
    ("alpha", 0.0, "must be a number > 0"),
    ("prob", 1.5, "must be a probability in [0, 1]"),
    ("attention_weight", -0.1, "must be in [0, 1]"),
    ("label_smoothing", 1.0, "must be in [0, 1) (1 would make every target uniform"),
    ("box", "timm", "allowed: exact, official"),
])
def test_bad_parameters_are_one_line_naming_the_key(key, value, allowed):
    with pytest.raises(UserError) as err:
        create_regularizer("transmix", **{**PARAMS, key: value})
    assert str(err.value).startswith(f"regularizer.transmix.{key}={value!r} is invalid: {allowed}")


# --- through the CLI -------------------------------------------------------------------------------------------
TINY_VIT = ["backbone.embed_dim=16", "backbone.depth=2", "backbone.num_heads=2"]


@pytest.mark.slow
def test_transmix_preset_trains_one_epoch_on_digits(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=transmix", "data=digits", "trainer.max_epochs=1", "logger=none", *TINY_VIT,
                        f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed" and payload["epochs"] == 1
    assert payload["components"]["backbone"] == "vit_tiny" and payload["components"]["regularizer"] == "transmix"
    assert 0.0 <= payload["metrics"]["test_acc"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("overrides,message", [
    (["regularizer=[transmix]", "backbone=convnet"],
     "regularizer=transmix needs backbone=vit_tiny: it re-weights the CutMix targets by a vision transformer's "
     "class-token attention, which backbone=convnet does not have"),
    (["+exp=transmix", "regularizer=[transmix,cutmix]"],
     "regularizer=[transmix,cutmix]: transmix and cutmix both do input mixing; keep only one of them"),
])
def test_cli_refusals_are_one_line_with_exit_2(run_regbench, tmp_path, overrides, message):
    done = run_regbench("train", *overrides, "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
    assert not (tmp_path / "run").exists()
