"""BatchFormer's math: the encoder layer over the batch against a hand-written one (the official configuration),
the loss as the official concatenation's cross-entropy, the plain network at evaluation, the encoder trained."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.backbones import build_backbone
from regbench.optim import build_optimizer
from regbench.regularizers import create_regularizer, soft_cross_entropy
from regbench.regularizers.batchformer import BatchFormerHead, batch_encoder_layer, plain_state_dict
from regbench.run.module import ClassifierModule

OFFICIAL = {"num_heads": 4, "ffn_dim": None, "dropout": 0.5}  # conf/regularizer/batchformer.yaml
WIDTH, CLASSES = 8, 3


def backbone() -> nn.Module:
    torch.manual_seed(0)
    return build_backbone({"name": "mlp", "hidden": [WIDTH]}, {"name": "batchnorm"}, (1, 2, 2), CLASSES)


def module(*regularizers) -> ClassifierModule:
    return ClassifierModule(backbone(), [create_regularizer(name, **params) for name, params in regularizers],
                            CLASSES, {"name": "sgd", "lr": 0.1, "momentum": 0.9}, {"name": "constant"})


def encoder_by_hand(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """Post-norm encoder layer on the (B, D) rows as ONE sequence of B tokens, without dropout:
    y = LN1(x + MHA(x)), out = LN2(y + W2 relu(W1 y))."""
    attn, heads = layer.self_attn, layer.self_attn.num_heads
    q, k, v = (x @ attn.in_proj_weight.T + attn.in_proj_bias).chunk(3, dim=-1)
    split = lambda t: t.unflatten(-1, (heads, -1)).transpose(0, 1)  # noqa: E731  (H, B, D/H)
    q, k, v = split(q), split(k), split(v)
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)  # (H, B, B): across samples
    mixed = (weights @ v).transpose(0, 1).flatten(1)
    y = F.layer_norm(x + attn.out_proj(mixed), (x.shape[-1],), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    ffn = layer.linear2(torch.relu(layer.linear1(y)))
    return F.layer_norm(y + ffn, (x.shape[-1],), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)


def test_the_encoder_is_the_official_transformer_encoder_layer_c_4_c_half():
    model = create_regularizer("batchformer", **OFFICIAL).wrap_model(backbone())
    layer = model.head.encoder
    assert isinstance(model.head, BatchFormerHead) and isinstance(layer, nn.TransformerEncoderLayer)
    assert (layer.self_attn.embed_dim, layer.self_attn.num_heads) == (WIDTH, 4)
    assert (layer.linear1.in_features, layer.linear1.out_features) == (WIDTH, WIDTH)
    assert layer.dropout.p == layer.dropout1.p == layer.dropout2.p == layer.self_attn.dropout == 0.5
    assert layer.norm_first is False and layer.activation is F.relu and layer.self_attn.batch_first is False


def test_the_encoder_attends_across_the_batch_as_by_hand():
    torch.manual_seed(1)
    layer = batch_encoder_layer(WIDTH, 4, WIDTH, 0.5)
    head = BatchFormerHead(nn.Identity(), layer).train()
    layer.eval()  # the head takes its training path; the layer drops nothing, to compare with the hand version
    x = torch.randn(5, WIDTH)
    out = head(x)[1]
    torch.testing.assert_close(out, encoder_by_hand(layer, x))
    # Sample 0's output moves when only sample 3 changes: it attends to the other samples.
    changed = x.clone()
    changed[3] += 1.0
    moved = layer(changed.unsqueeze(1)).squeeze(1)
    assert not torch.allclose(moved[0], out[0])
    torch.testing.assert_close(moved, encoder_by_hand(layer, changed))


def test_with_one_sample_it_is_a_standard_encoder_layer_on_a_length_one_sequence():
    torch.manual_seed(2)
    layer = batch_encoder_layer(WIDTH, 4, WIDTH, 0.5).eval()
    x = torch.randn(1, WIDTH)
    # One token: its attention weight is 1, so MHA(x) = out_proj(W_v x + b_v) whatever the queries and keys.
    attn = layer.self_attn
    value = x @ attn.in_proj_weight[2 * WIDTH:].T + attn.in_proj_bias[2 * WIDTH:]
    y = layer.norm1(x + attn.out_proj(value))
    expected = layer.norm2(y + layer.linear2(torch.relu(layer.linear1(y))))
    torch.testing.assert_close(layer(x.unsqueeze(1)).squeeze(1), expected)


def test_the_training_loss_is_the_cross_entropy_of_both_halves_with_the_labels_duplicated():
    trained = module(("batchformer", OFFICIAL))
    trained.train()
    gen = torch.Generator().manual_seed(3)
    images, labels = torch.randn(6, 1, 2, 2, generator=gen), torch.randint(0, CLASSES, (6,), generator=gen)
    torch.manual_seed(4)  # the encoder's dropout masks, drawn again below in the same order
    loss = trained.training_loss((images, labels, torch.arange(6)), 0)
    # The official recipe: x, y <- [x; BT(x)], [y; y]; the shared classifier; mean cross-entropy over 2B.
    net = trained.model
    torch.manual_seed(4)
    features = net.forward_features(images)
    transformed = net.head.encoder(features.unsqueeze(1)).squeeze(1)
    expected = F.cross_entropy(net.head.head(torch.cat([features, transformed])), torch.cat([labels, labels]))
    torch.testing.assert_close(loss, expected)


def test_mixed_targets_are_duplicated_for_both_halves():
    trained = module(("mixup", {"alpha": 1.0, "prob": 1.0}), ("batchformer", OFFICIAL))
    gen = torch.Generator().manual_seed(5)
    raw = torch.randn(2, 4, CLASSES, generator=gen)
    targets = torch.softmax(torch.randn(4, CLASSES, generator=gen), dim=-1)  # soft, as mixup leaves them
    reduced = trained.reduced_logits(raw)
    per_sample = trained.task_loss(raw, reduced, targets)
    duplicated = soft_cross_entropy(raw.flatten(0, 1), torch.cat([targets, targets]))
    torch.testing.assert_close(per_sample.mean(), duplicated.mean())
    torch.testing.assert_close(reduced, raw.mean(dim=0))
    trained.train()
    images, labels = torch.randn(4, 1, 2, 2, generator=gen), torch.tensor([0, 1, 2, 0])
    assert torch.isfinite(trained.training_loss((images, labels, torch.arange(4)), 0))


def test_evaluation_is_the_plain_network_and_its_state_loads_into_it():
    plain = backbone().eval()
    wrapped = create_regularizer("batchformer", **OFFICIAL).wrap_model(copy.deepcopy(plain)).eval()
    images = torch.randn(7, 1, 2, 2)
    torch.testing.assert_close(wrapped(images), plain(images))
    fresh = build_backbone({"name": "mlp", "hidden": [WIDTH]}, {"name": "batchnorm"}, (1, 2, 2), CLASSES).eval()
    fresh.load_state_dict(plain_state_dict({f"model.{k}": v for k, v in wrapped.state_dict().items()}))
    torch.testing.assert_close(fresh(images), plain(images))


def test_the_encoder_gets_gradients_and_optimizer_state():
    trained = module(("batchformer", OFFICIAL))
    trained.train()
    optimizer = build_optimizer({"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}, trained.model)
    encoder = dict(trained.model.head.encoder.named_parameters())
    before = {name: p.detach().clone() for name, p in encoder.items()}
    gen = torch.Generator().manual_seed(6)
    images, labels = torch.randn(6, 1, 2, 2, generator=gen), torch.randint(0, CLASSES, (6,), generator=gen)
    trained.training_loss((images, labels, torch.arange(6)), 0).backward()
    for name, p in encoder.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    optimizer.step()
    for name, p in encoder.items():
        assert "momentum_buffer" in optimizer.state[p] and not torch.equal(p, before[name]), name


@pytest.mark.parametrize("order", [("dropout", "batchformer"), ("batchformer", "dropout")])
def test_it_stacks_with_dropout_before_or_after_the_encoder(order):
    params = {"dropout": {"rate": 0.5}, "batchformer": OFFICIAL}
    trained = module(*[(name, params[name]) for name in order])
    trained.train()
    assert trained.model(torch.randn(4, 1, 2, 2)).shape == (2, 4, CLASSES)
    trained.eval()
    assert trained.eval_network()(torch.randn(4, 1, 2, 2)).shape == (4, CLASSES)


def test_heads_that_do_not_divide_the_feature_width_are_refused():
    from regbench.errors import ParamError
    from regbench.regularizers import MemoryBudget

    reg = create_regularizer("batchformer", **dict(OFFICIAL, num_heads=3))
    with pytest.raises(ParamError, match=r"num_heads=3 is invalid: must divide the backbone's feature width 8"):
        reg.check_memory(MemoryBudget(batch_size=4, num_features=8, num_classes=3, memory=None))
    create_regularizer("batchformer", **OFFICIAL).check_memory(MemoryBudget(4, 8, 3, None))


def test_rankmixup_scores_its_mixed_copies_through_the_reduced_network():
    trained = module(("rankmixup", {"variant": "mrl", "mixup_alpha": 2.0, "loss_weight": 0.1, "margin": 2.0,
                                    "num_mixes": 2}), ("batchformer", OFFICIAL))
    trained.train()
    images = torch.randn(5, 1, 2, 2)
    assert trained.training_network(images).shape == (5, CLASSES)
    loss = trained.training_loss((images, torch.tensor([0, 1, 2, 0, 1]), torch.arange(5)), 0)
    assert loss.shape == () and torch.isfinite(loss)


@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet18", "preact_resnet18", "wrn16_4", "vit_tiny"])
def test_every_backbone_with_a_head_trains_two_halves_and_evaluates_plain(name):
    from hydra import compose, initialize_config_module

    norm = "layernorm" if name == "vit_tiny" else "batchnorm"  # a transformer normalizes tokens
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"backbone={name}", f"norm={norm}"])
    torch.manual_seed(0)
    net = build_backbone(dict(cfg.backbone), dict(cfg.norm), (1, 8, 8), CLASSES)
    plain = copy.deepcopy(net)
    wrapped = create_regularizer("batchformer", **OFFICIAL).wrap_model(net)
    images = torch.randn(4, 1, 8, 8)
    assert wrapped.train()(images).shape == (2, 4, CLASSES)
    plain.train()(images)  # the same batch-norm statistics as the wrapped network's training pass left
    with torch.no_grad():
        torch.testing.assert_close(wrapped.eval()(images), plain.eval()(images))
