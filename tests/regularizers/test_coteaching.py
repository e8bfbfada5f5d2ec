"""Co-teaching (Han et al., 2018): the R(T) schedules (the paper's and the official code's), the forget rate's
default (the noise rate) and the peer-chosen small-loss samples."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.errors import UserError
from regbench.regularizers import TrainProgress, build_regularizers, create_regularizer
from regbench.regularizers.noisy_labels import coteaching_losses, coteaching_per_sample, kept_count
from regbench.specs.run_checks import official_remember_rate, remember_rate

SYMMETRIC_40 = {"type": "symmetric", "rate": 0.4}


@pytest.mark.parametrize("epoch, expected", [(0, 1.0), (1, 0.98), (5, 0.9), (8, 0.84), (9, 0.82), (10, 0.8),
                                             (30, 0.8)])
def test_remember_rate_follows_the_paper_schedule(epoch, expected):
    # R(T) = 1 - min(T / T_k * tau, tau) with tau = 0.2, T_k = 10, T the 0-based epoch.
    assert remember_rate(epoch, forget_rate=0.2, num_gradual=10) == pytest.approx(expected)


# The official main.py: rate_schedule = tau everywhere, its first T_k entries linspace(0, tau, T_k), i.e.
# entry e = e * tau / (T_k - 1) for e < T_k; training runs `for epoch in range(1, n_epoch)` and reads entry
# `epoch`, so regbench's 0-based training epoch T reads entry T + 1. With tau = 0.2, T_k = 10 (step 0.2/9):
# T = 0 forgets 0.2/9 = 0.0222 (not 0), T = 7 forgets 8 * 0.2/9 = 0.1778, T = 8 (entry 9) forgets tau.
@pytest.mark.parametrize("epoch, expected", [(0, 1 - 0.2 / 9), (1, 1 - 2 * 0.2 / 9), (4, 1 - 5 * 0.2 / 9),
                                             (7, 1 - 8 * 0.2 / 9), (8, 0.8), (30, 0.8)])
def test_official_remember_rate_follows_the_official_code_table(epoch, expected):
    assert official_remember_rate(epoch, forget_rate=0.2, num_gradual=10) == pytest.approx(expected)


def test_official_schedule_keeps_fewer_samples_from_the_first_epoch_on():
    # A batch of 128 in the first epoch: the official code keeps int((1 - 0.2/9) * 128) = int(125.16) = 125
    # samples, the paper's R(0) = 1 all 128. T_k = 1: linspace(0, tau, 1) = [0] is entry 0 only, so every
    # training epoch forgets tau.
    assert kept_count(official_remember_rate(0, 0.2, 10), 128) == 125
    assert kept_count(remember_rate(0, 0.2, 10), 128) == 128
    assert official_remember_rate(0, 0.3, 1) == pytest.approx(0.7)


def test_official_loss_divides_the_kept_mean_by_the_kept_count_again():
    """bhanML/Co-teaching loss.py: F.cross_entropy(y_1[kept by 2], t[kept by 2]) (a mean) / num_remember."""
    reg = create_regularizer("coteaching", forget_rate=0.5, num_gradual=1, schedule="official")
    pair = reg.wrap_model(tiny_net())
    images, labels = torch.randn(8, 6), torch.randint(0, 3, (8,))
    targets = F.one_hot(labels, 3).float()
    pair.train()
    logits = pair(images)
    per_sample = -(targets * logits.log_softmax(-1)).sum(-1)
    loss = reg.loss(per_sample, logits, targets, torch.arange(8), pair).mean()
    with torch.no_grad():
        ce_1 = F.cross_entropy(pair.nets[0](images), labels, reduction="none")
        ce_2 = F.cross_entropy(pair.nets[1](images), labels, reduction="none")
    keep = 4  # T_k = 1: the first training epoch already forgets tau = 0.5 of 8
    expected = (ce_1[ce_2.argsort()[:keep]].mean() + ce_2[ce_1.argsort()[:keep]].mean()) / keep
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("noise, expected", [
    (SYMMETRIC_40, 0.4), ({"type": "pairflip", "rate": 0.45}, 0.45), ({"type": "asymmetric", "rate": 0.2}, 0.2),
    ({"type": "none", "rate": 0.3}, 0.0),  # clean labels: noise rate 0 whatever `rate` says
])
def test_a_null_forget_rate_is_the_configured_noise_rate(noise, expected):
    reg = build_regularizers({"coteaching": {"forget_rate": None, "num_gradual": 10, "schedule": "paper"}}, seed=0,
                             label_noise=noise)[0]
    assert reg.forget_rate == expected
    given = build_regularizers({"coteaching": {"forget_rate": 0.1, "num_gradual": 10, "schedule": "paper"}}, seed=0,
                               label_noise=SYMMETRIC_40)[0]
    assert given.forget_rate == 0.1


@pytest.mark.parametrize("params, noise, message", [
    ({"forget_rate": None}, {"type": "file", "rate": 0.0},
     r"regularizer.coteaching.forget_rate=None is invalid: null means the configured noise rate, and "
     r"data.noise.type=file has none; give a rate in \[0, 1\)"),
    ({"forget_rate": None}, None, r"regularizer.coteaching.forget_rate=None is invalid: null means the noise rate"),
    ({"forget_rate": 1.0}, SYMMETRIC_40, r"regularizer.coteaching.forget_rate=1.0 is invalid: must be in \[0, 1\)"),
    ({"schedule": "authors"}, SYMMETRIC_40,
     r"regularizer.coteaching.schedule='authors' is invalid: allowed: paper, official"),
    ({"label_noise": SYMMETRIC_40}, SYMMETRIC_40,
     r"regularizer.coteaching.label_noise is not a parameter of regularizer 'coteaching'; allowed: forget_rate, "
     r"num_gradual, schedule; regbench sets it$"),
])
def test_bad_coteaching_settings_fail_with_one_line(params, noise, message):
    cfg = {"forget_rate": None, "num_gradual": 10, "schedule": "paper", **params}
    with pytest.raises(UserError, match=message) as err:
        build_regularizers({"coteaching": cfg}, seed=0, label_noise=noise)
    assert "\n" not in str(err.value)


def test_each_network_keeps_the_samples_its_peer_finds_easiest():
    loss_1 = torch.tensor([0.9, 0.1, 0.5, 2.0, 0.3, 1.5, 0.7, 0.2])
    loss_2 = torch.tensor([0.2, 1.1, 0.4, 0.1, 3.0, 0.6, 0.05, 0.8])
    kept_1, kept_2 = coteaching_losses(loss_1, loss_2, rate=0.5)
    # Peer (network 2) easiest four: samples 6, 3, 0, 2; network 1's easiest four: 1, 7, 4, 2.
    assert sorted(kept_1.tolist()) == sorted(loss_1[[6, 3, 0, 2]].tolist())
    assert sorted(kept_2.tolist()) == sorted(loss_2[[1, 7, 4, 2]].tolist())
    assert len(coteaching_losses(loss_1, loss_2, rate=0.8)[0]) == int(0.8 * 8)


def test_the_pair_loss_is_per_sample_with_the_kept_means_as_its_batch_mean():
    loss_1 = torch.tensor([0.9, 0.1, 0.5, 2.0, 0.3, 1.5, 0.7, 0.2])
    loss_2 = torch.tensor([0.2, 1.1, 0.4, 0.1, 3.0, 0.6, 0.05, 0.8])
    per_sample = coteaching_per_sample(loss_1, loss_2, rate=0.5)
    kept_1, kept_2 = coteaching_losses(loss_1, loss_2, rate=0.5)
    assert per_sample.shape == (8,)
    torch.testing.assert_close(per_sample.mean(), kept_1.mean() + kept_2.mean())
    # Sample 5 is in neither network's easiest half: it contributes nothing.
    assert per_sample[5] == 0


def test_coteaching_with_per_class_loss_weights_weights_each_kept_sample():
    from regbench.run.module import ClassifierModule

    class_weights = torch.tensor([1.0, 2.0, 3.0])
    reg = create_regularizer("coteaching", forget_rate=0.5, num_gradual=1, schedule="paper")
    module = ClassifierModule(tiny_net(), [reg], 3, {"name": "sgd"}, {"name": "constant"},
                              class_weights=class_weights)
    module.log = lambda *args, **kwargs: None  # no Trainer here
    reg.pair.epochs_done.fill_(1)
    images, labels = torch.randn(8, 6), torch.randint(0, 3, (8,))
    loss = module.training_loss((images, labels, torch.arange(8)), 0)
    with torch.no_grad():
        ce_1 = F.cross_entropy(reg.pair.nets[0](images), labels, reduction="none")
        ce_2 = F.cross_entropy(reg.pair.nets[1](images), labels, reduction="none")
    expected = (coteaching_per_sample(ce_1, ce_2, 0.5) * class_weights[labels]).mean()
    torch.testing.assert_close(loss, expected)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 3))


def test_each_network_is_trained_only_on_its_peers_choice():
    reg = create_regularizer("coteaching", forget_rate=0.5, num_gradual=1, schedule="paper")
    pair = reg.wrap_model(tiny_net())
    net_1, net_2 = pair.nets
    assert not torch.equal(net_1[1].weight, net_2[1].weight), "the peer must start from a different init"
    pair.epochs_done.fill_(1)  # R = 1 - 0.5: keep half the batch
    images, labels = torch.randn(8, 6), torch.randint(0, 3, (8,))
    targets = F.one_hot(labels, 3).float()

    pair.train()
    logits = pair(images)
    per_sample = -(targets * logits.log_softmax(-1)).sum(-1)
    reg.loss(per_sample, logits, targets, torch.arange(8), pair).mean().backward()

    # Reference: network 1 on the four samples with the smallest network-2 loss, and vice versa.
    with torch.no_grad():
        ce_1 = F.cross_entropy(net_1(images), labels, reduction="none")
        ce_2 = F.cross_entropy(net_2(images), labels, reduction="none")
    chosen_for_1, chosen_for_2 = ce_2.argsort()[:4], ce_1.argsort()[:4]
    for net, chosen in ((net_1, chosen_for_1), (net_2, chosen_for_2)):
        reference = torch.autograd.grad(F.cross_entropy(net(images[chosen]), labels[chosen]), net[1].weight)[0]
        torch.testing.assert_close(net[1].weight.grad, reference)


def test_evaluation_uses_the_network_with_better_validation_accuracy():
    reg = create_regularizer("coteaching", forget_rate=0.2, num_gradual=10, schedule="paper")
    pair = reg.wrap_model(tiny_net())
    images = torch.randn(10, 6)
    labels = pair.nets[1](images).argmax(-1)  # network 2 is always right
    pair.eval()
    reg.on_validation_batch_end(pair, images[:5], labels[:5], last_batch=False)
    reg.on_validation_batch_end(pair, images[5:], labels[5:], last_batch=True)
    assert int(pair.best) == 1
    torch.testing.assert_close(pair(images), pair.nets[1](images))
    reg.on_train_batch_end(pair, TrainProgress(epoch=3, max_epochs=10, epoch_finished=True, step=4, total_steps=10,
                                               train_batches=[]))
    assert int(pair.epochs_done) == 4


@pytest.mark.parametrize("stack, message", [
    ({"coteaching": {"forget_rate": 0.2, "num_gradual": 10, "schedule": "paper"}, "elr": {"lam": 3.0, "beta": 0.7}},
     "coteaching and elr both do noisy-label loss"),
    ({"coteaching": {"forget_rate": 0.2, "num_gradual": 10, "schedule": "paper"}, "ema": {"decay": 0.999}},
     "coteaching and ema both do evaluated-network selection"),
])
def test_nonsense_stacks_fail_with_one_line(stack, message):
    with pytest.raises(UserError, match=message) as err:
        build_regularizers(stack, seed=0)
    assert "\n" not in str(err.value)


def test_the_cli_refuses_a_null_forget_rate_for_human_label_files_before_any_run_directory(tmp_path, capsys,
                                                                                          absent_data_files):
    from regbench.run.cli import main as train_main

    label_file = tmp_path / "CIFAR-10_human.pt"
    label_file.write_bytes(b"")  # only its existence is checked before the data is loaded
    assert train_main(["data=cifar10", "data.noise.type=file", f"data.noise.file={label_file}",
                       "regularizer=[coteaching]", "logger=none", f"hydra.run.dir={tmp_path / 'bad'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "regbench train: error: regularizer.coteaching.forget_rate=None is invalid: null means the configured "
        "noise rate, and data.noise.type=file has none; give a rate in [0, 1) (e.g. the label set's noise rate)"]
    assert not (tmp_path / "bad").exists()
