"""EMA against timm's ModelEmaV3 and torch's AveragedModel; SWA against AveragedModel + update_bn."""
import pytest
import torch
import torch.nn as nn
from timm.utils import ModelEmaV3
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from regbench.errors import UserError
from regbench.run.module import ClassifierModule
from regbench.regularizers import TrainProgress, build_regularizers, create_regularizer

OPTIM = {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}
SCHED = {"name": "constant"}


def small_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def train_step(model: nn.Module, optimizer, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    images, labels = torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()


def progress(epoch=0, max_epochs=1, epoch_finished=False, batches=()):
    return TrainProgress(epoch=epoch, max_epochs=max_epochs, epoch_finished=epoch_finished, step=epoch + 1,
                         total_steps=max_epochs, train_batches=batches)


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_matches_timm_model_ema_v3(warmup):
    model = small_bn_net().train()
    ema = create_regularizer("ema", decay=0.9, warmup=warmup, warmup_gamma=1.0, warmup_power=2 / 3)
    ema.wrap_model(model)
    reference = ModelEmaV3(model, decay=0.9, use_warmup=warmup, warmup_gamma=1.0, warmup_power=2 / 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(1, 6):
        train_step(model, optimizer, seed=step)
        ema.on_train_batch_end(model, progress())
        reference.update(model, step=step)  # timm's train loop passes the 1-based update count
    for (key, ours), theirs in zip(ema.average.state_dict().items(), reference.module.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=key)
    assert ema.eval_model(model) is ema.average


def test_ema_parameters_match_torch_averaged_model():
    model = small_bn_net().train()
    ema = create_regularizer("ema", decay=0.8, warmup=False)  # the plain EMA torch averages (the config warms up)
    ema.wrap_model(model)
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(4):
        train_step(model, optimizer, seed=step)
        ema.on_train_batch_end(model, progress())
        reference.update_parameters(model)
    for ours, theirs in zip(ema.average.parameters(), reference.module.parameters()):
        torch.testing.assert_close(ours, theirs)


def test_swa_matches_averaged_model_and_update_bn():
    model = small_bn_net().train()
    swa = create_regularizer("swa", start=0.5)
    swa.wrap_model(model)
    reference = AveragedModel(model)
    gen = torch.Generator().manual_seed(9)
    batches = [(torch.randn(8, 1, 6, 6, generator=gen), torch.zeros(8, dtype=torch.long), torch.arange(8))
               for _ in range(3)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(4):  # averages at the ends of epochs 2 and 3 (start = floor(0.5 * 4))
        train_step(model, optimizer, seed=epoch)
        swa.on_train_batch_end(model, progress(epoch, 4, epoch_finished=True, batches=batches))
        if epoch >= 2:
            reference.update_parameters(model)
        assert (swa.eval_model(model) is swa.average) == (epoch >= 2)
    update_bn([images for images, *_ in batches], reference)
    assert int(swa.num_averaged) == 2
    for (key, ours), theirs in zip(swa.average.state_dict().items(), reference.module.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=key)


@pytest.mark.parametrize("name, params", [("ema", {"decay": 0.5}), ("swa", {"start": 0.0})])
def test_averages_are_saved_in_the_module_checkpoint(name, params):
    regularizers = build_regularizers({name: params}, seed=0)
    module = ClassifierModule(small_bn_net(), regularizers, 3, OPTIM, SCHED)
    average = regularizers[0].average
    with torch.no_grad():
        for p in average.parameters():
            p.add_(1.0)
    state = module.state_dict()
    assert any(key.startswith(f"regularizer_state.{name}.average.") for key in state)
    fresh = ClassifierModule(small_bn_net(), build_regularizers({name: params}, seed=0), 3, OPTIM, SCHED)
    fresh.load_state_dict(state)
    for ours, saved in zip(fresh.regularizers[0].average.parameters(), average.parameters()):
        torch.testing.assert_close(ours, saved)


def test_two_weight_averages_cannot_be_stacked():
    with pytest.raises(UserError, match="ema and swa both do weight averaging"):
        build_regularizers({"ema": {"decay": 0.999}, "swa": {"start": 0.75}}, seed=0)


@pytest.mark.parametrize("name, params, message", [
    ("ema", {"decay": 1.0}, "regularizer.ema.decay=1.0 is invalid"),
    ("ema", {"decay": 0.9, "warmup": "yes"}, "regularizer.ema.warmup='yes' is invalid"),
    ("swa", {"start": 1.5}, "regularizer.swa.start=1.5 is invalid"),
])
def test_bad_values_fail_with_one_line(name, params, message):
    with pytest.raises(UserError, match=message) as err:
        create_regularizer(name, **params)
    assert "\n" not in str(err.value)
