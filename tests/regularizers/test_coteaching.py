"""Co-teaching (Han et al., 2018): the R(T) schedule and the peer-chosen small-loss samples."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.errors import UserError
from regbench.regularizers import TrainProgress, build_regularizers, create_regularizer
from regbench.regularizers.noisy_labels import coteaching_losses, coteaching_per_sample, remember_rate


@pytest.mark.parametrize("epoch, expected", [(0, 1.0), (1, 0.98), (5, 0.9), (10, 0.8), (30, 0.8)])
def test_remember_rate_follows_the_paper_schedule(epoch, expected):
    # R(T) = 1 - min(T / T_k * tau, tau) with tau = 0.2, T_k = 10.
    assert remember_rate(epoch, forget_rate=0.2, num_gradual=10) == pytest.approx(expected)


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
    from regbench.module import ClassifierModule

    class_weights = torch.tensor([1.0, 2.0, 3.0])
    reg = create_regularizer("coteaching", forget_rate=0.5, num_gradual=1)
    module = ClassifierModule(tiny_net(), [reg], 3, {"name": "sgd"}, {"name": "constant"},
                              class_weights=class_weights)
    module.log = lambda *args, **kwargs: None  # no Trainer here
    reg.pair.epochs_done.fill_(1)
    images, labels = torch.randn(8, 6), torch.randint(0, 3, (8,))
    loss = module.training_step((images, labels, torch.arange(8)), 0)
    with torch.no_grad():
        ce_1 = F.cross_entropy(reg.pair.nets[0](images), labels, reduction="none")
        ce_2 = F.cross_entropy(reg.pair.nets[1](images), labels, reduction="none")
    expected = (coteaching_per_sample(ce_1, ce_2, 0.5) * class_weights[labels]).mean()
    torch.testing.assert_close(loss, expected)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 3))


def test_each_network_is_trained_only_on_its_peers_choice():
    reg = create_regularizer("coteaching", forget_rate=0.5, num_gradual=1)
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
    reg = create_regularizer("coteaching", forget_rate=0.2, num_gradual=10)
    pair = reg.wrap_model(tiny_net())
    images = torch.randn(10, 6)
    labels = pair.nets[1](images).argmax(-1)  # network 2 is always right
    pair.eval()
    reg.on_validation_batch_end(pair, images[:5], labels[:5], last_batch=False)
    reg.on_validation_batch_end(pair, images[5:], labels[5:], last_batch=True)
    assert int(pair.best) == 1
    torch.testing.assert_close(pair(images), pair.nets[1](images))
    reg.on_train_batch_end(pair, TrainProgress(epoch=3, max_epochs=10, epoch_finished=True, train_batches=[]))
    assert int(pair.epochs_done) == 4


@pytest.mark.parametrize("stack, message", [
    ({"coteaching": {"forget_rate": 0.2, "num_gradual": 10}, "elr": {"lam": 3.0, "beta": 0.7}},
     "coteaching and elr both do noisy-label loss"),
    ({"coteaching": {"forget_rate": 0.2, "num_gradual": 10}, "ema": {"decay": 0.999}},
     "coteaching and ema both do evaluated-network selection"),
])
def test_nonsense_stacks_fail_with_one_line(stack, message):
    with pytest.raises(UserError, match=message) as err:
        build_regularizers(stack, seed=0)
    assert "\n" not in str(err.value)
