"""Stochastic depth, alpha dropout and multi-sample dropout against the papers' definitions and timm / torch."""
import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import drop_path

from regbench.backbones import build_backbone
from regbench.backbones.resnet import BasicBlock
from regbench.errors import UserError
from regbench.run.module import ClassifierModule
from regbench.regularizers import create_regularizer


def tiny_resnet():
    return build_backbone({"name": "resnet18", "width": 4}, {"name": "layernorm"}, (1, 8, 8), 3)


def plain_mlp(in_features: int, hidden: int):
    return build_backbone({"name": "mlp", "hidden": [hidden]}, {"name": "none"}, (1, 1, in_features), 3)


# --- droppath -------------------------------------------------------------------------------------------------
def test_droppath_drop_probabilities_follow_the_linear_depth_rule():
    model = create_regularizer("droppath", drop_prob=0.5).wrap_model(tiny_resnet())
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    # Huang et al. (2016): survival p_l = 1 - l/L * (1 - p_L), p_L = 0.5, L = 8 blocks.
    survival = [1 - l / 8 * (1 - 0.5) for l in range(1, 9)]
    assert [1 - b.drop_path.drop_prob for b in blocks] == pytest.approx(survival)


def branch_and_shortcut(block, x):
    return block.norm2(block.conv2(torch.relu(block.norm1(block.conv1(x))))), block.shortcut(x)


def test_droppath_drops_whole_sample_branches_with_rescaling_in_training_only():
    model = create_regularizer("droppath", drop_prob=0.8).wrap_model(tiny_resnet())
    block = [m for m in model.modules() if isinstance(m, BasicBlock)][-1]
    keep = 1 - block.drop_path.drop_prob
    x = torch.randn(256, 32, 3, 3)  # the last block runs at width 4 * 2**3
    branch, shortcut = branch_and_shortcut(block, x)
    block.train()
    torch.manual_seed(0)
    out = block(x)
    dropped = torch.isclose(out, torch.relu(shortcut)).flatten(1).all(dim=1)
    kept = torch.isclose(out, torch.relu(branch / keep + shortcut), atol=1e-6).flatten(1).all(dim=1)
    assert torch.equal(dropped | kept, torch.ones(256, dtype=torch.bool))  # all or nothing, per sample
    assert abs(kept.float().mean().item() - keep) < 4 * math.sqrt(keep * (1 - keep) / 256)
    torch.manual_seed(0)
    torch.testing.assert_close(out, torch.relu(drop_path(branch, block.drop_path.drop_prob, True) + shortcut))
    block.eval()
    torch.testing.assert_close(block(x), torch.relu(branch + shortcut))  # evaluation: the plain block


def test_droppath_refuses_backbones_without_residual_blocks():
    convnet = build_backbone({"name": "convnet", "widths": [4]}, {"name": "layernorm"}, (1, 8, 8), 3)
    with pytest.raises(UserError, match=r"^regularizer=droppath needs a backbone with residual blocks.*"
                                        r"ConvNet has none$"):
        create_regularizer("droppath", drop_prob=0.5).wrap_model(convnet)


# --- alpha_dropout --------------------------------------------------------------------------------------------
def test_alpha_dropout_matches_the_selu_paper_formula():
    rate = 0.1
    model = create_regularizer("alpha_dropout", rate=rate).wrap_model(plain_mlp(4, 4096))
    layer = model.head[0]
    x = torch.randn(64, 4096)
    layer.train()
    out = layer(x)
    # Klambauer et al. (2017), eq. 10-11: dropped units go to alpha' = -lambda * alpha, then a * (.) + b with
    # a = ((1 - q)(1 + q alpha'^2))^(-1/2), b = -a q alpha' for dropout rate q.
    alpha_prime = -1.0507009873554805 * 1.6732632423543772
    a = ((1 - rate) * (1 + rate * alpha_prime ** 2)) ** -0.5
    b = -a * rate * alpha_prime
    dropped = torch.isclose(out, torch.full_like(out, a * alpha_prime + b))
    torch.testing.assert_close(out[~dropped], a * x[~dropped] + b)
    assert abs(dropped.float().mean().item() - rate) < 0.01
    assert abs(out.mean().item()) < 0.02 and abs(out.var().item() - 1) < 0.02  # self-normalizing
    layer.eval()
    assert torch.equal(layer(x), x)


# --- multisample_dropout --------------------------------------------------------------------------------------
def msd_module(rate=0.5, num_samples=8):
    torch.manual_seed(0)
    model = plain_mlp(4, 6)
    reg = create_regularizer("multisample_dropout", rate=rate, num_samples=num_samples)
    return ClassifierModule(model, [reg], 3, {"name": "sgd", "lr": 0.1}, {"name": "constant"})


@pytest.mark.filterwarnings("ignore:.*self.log.*")
def test_multisample_training_loss_is_the_mean_of_the_per_mask_losses():
    module = msd_module()
    images, labels = torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    module.train()
    torch.manual_seed(123)
    loss = module.training_loss((images, labels, torch.arange(5)), 0)
    features = module.model.forward_features(images)
    torch.manual_seed(123)
    masks = torch.empty(8, 5, 6).bernoulli_(0.5)
    linear = module.model.head.head
    per_mask = [F.cross_entropy(linear(features * masks[m] / 0.5), labels) for m in range(8)]
    torch.testing.assert_close(loss, torch.stack(per_mask).mean())
    assert len({round(v.detach().item(), 6) for v in per_mask}) > 1  # the masks really differ


def test_multisample_evaluation_is_one_deterministic_dropout_free_pass():
    module = msd_module()
    module.eval()
    images = torch.randn(5, 1, 2, 2)
    first, second = module(images), module(images)
    assert first.shape == (5, 3)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, module.model.head.head(module.model.forward_features(images)))
