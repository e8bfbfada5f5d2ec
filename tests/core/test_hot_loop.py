"""The training step: its optimizer step written out (as automatic optimization orders it), epoch sums as a
synced, checkpointed torchmetrics Metric, the finite-loss check one step behind (no host read of the current step's
loss), multi-sample dropout reducing its own logits, and the per-step work skipped when nothing shows it."""
from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, TensorDataset

from regbench.backbones import build_backbone
from regbench.data.module import build_datamodule
from regbench.errors import TrainingDiverged
from regbench.regularizers import create_regularizer
from regbench.run.distributed import free_port
from regbench.run.epoch_sums import TrainEpochSums
from regbench.run.finite_check import LaggedFiniteCheck
from regbench.run.module import ClassifierModule, upgrade_step_count, writes_logs_this_step
from regbench.run.trainer import StepValuesBar, build_trainer
from data_configs import dataset_config
from test_run_resumption import TRAINER_CONFIG


def mlp_module(regularizers=(), is_noisy=None) -> ClassifierModule:
    torch.manual_seed(0)
    model = build_backbone({"name": "mlp", "hidden": [6]}, {"name": "batchnorm"}, (1, 2, 2), 3)
    return ClassifierModule(model, [create_regularizer(name, **params) for name, params in regularizers], 3,
                            {"name": "sgd", "lr": 0.1}, {"name": "constant"}, is_noisy=is_noisy)


def batches(count: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 1, 2, 2, generator=gen), torch.randint(0, 3, (8,), generator=gen),
             torch.arange(8) + 8 * i) for i in range(count)]


# --- epoch sums -----------------------------------------------------------------------------------------------
def test_epoch_sums_resumed_from_a_mid_epoch_state_dict_equal_the_uninterrupted_epoch():
    noisy = torch.arange(48) % 3 == 0
    data = batches(6)
    whole = mlp_module(is_noisy=noisy)
    for i, batch in enumerate(data):
        whole.training_loss(batch, i)
    first = mlp_module(is_noisy=noisy)
    for i, batch in enumerate(data[:4]):
        first.training_loss(batch, i)
    state = {k: v.clone() for k, v in first.state_dict().items()}
    assert {"train_sums.loss_sum", "train_sums.correct", "train_sums.images", "train_sums.noise_split"} <= set(state)
    resumed = mlp_module(is_noisy=noisy)
    resumed.load_state_dict(state)
    for i, batch in enumerate(data[4:], start=4):
        resumed.training_loss(batch, i)
    assert resumed.train_epoch_stats() == whole.train_epoch_stats()
    stats = whole.train_epoch_stats()
    assert stats["train_images"] == 48 and set(stats) == {"train_loss", "train_acc", "train_images",
                                                          "train_acc_clean", "train_acc_noisy"}


def test_a_checkpoint_with_the_earlier_epoch_sums_loads_into_the_metric():
    module = mlp_module()
    for i, batch in enumerate(batches(2)):
        module.training_loss(batch, i)
    state = module.state_dict()
    sums = {key.removeprefix("train_sums."): state.pop(key) for key in list(state) if key.startswith("train_sums.")}
    earlier = {"state_dict": state, "regbench_epoch_sums": {
        "loss": sums["loss_sum"], "correct": sums["correct"].float(), "noise_split": sums["noise_split"].float(),
        "images": int(sums["images"])}}
    resumed = mlp_module()
    resumed.on_load_checkpoint(earlier)
    resumed.load_state_dict(earlier["state_dict"])  # strict: every key of the metric is there
    assert resumed.train_epoch_stats() == module.train_epoch_stats() and "regbench_epoch_sums" not in earlier


def test_epoch_sums_match_the_sums_by_hand_and_reset():
    sums = TrainEpochSums()
    correct = [torch.tensor([True, False, True]), torch.tensor([True, True])]
    noisy = [torch.tensor([False, True, True]), torch.tensor([False, False])]
    for loss, c, n in zip((torch.tensor(0.5), torch.tensor(2.0)), correct, noisy):
        sums.update(loss, c, n)
    stats = sums.compute()
    assert stats["train_loss"] == pytest.approx((0.5 * 3 + 2.0 * 2) / 5)
    assert stats["train_acc"] == 4 / 5 and stats["train_images"] == 5
    assert stats["train_acc_clean"] == 3 / 3 and stats["train_acc_noisy"] == 1 / 2
    sums.reset()
    sums.update(torch.tensor(1.0), torch.tensor([False]))
    assert sums.compute()["train_images"] == 1 and math.isnan(sums.compute()["train_acc_noisy"])


def _rank_sums(rank: int, world: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        sums = TrainEpochSums()
        # Rank r sees r + 1 samples of loss r + 1, one of them correct.
        sums.update(torch.tensor(float(rank + 1)), torch.arange(rank + 1) == 0)
        results[rank] = sums.compute()
        results[f"local{rank}"] = int(sums.images)  # compute() leaves the rank's own sums in place
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes
def test_epoch_sums_are_summed_over_two_gloo_ranks():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_rank_sums, args=(2, free_port(), results), nprocs=2, start_method="spawn")
        results = dict(results)
    expected = {"train_loss": (1 * 1 + 2 * 2) / 3, "train_acc": 2 / 3, "train_images": 3}
    for rank in (0, 1):
        assert {k: results[rank][k] for k in expected} == pytest.approx(expected)
    assert results["local0"] == 1 and results["local1"] == 2


# --- the finite-loss check, one step behind -------------------------------------------------------------------
class HostReads(TorchDispatchMode):
    """Records the storage of every tensor whose value is read on the host (.item(), bool(), float())."""

    def __init__(self):
        super().__init__()
        self.read = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.read.append(args[0].untyped_storage().data_ptr())
        return func(*args, **(kwargs or {}))


def test_a_non_finite_loss_is_reported_at_the_next_step_naming_its_own_batch():
    check = LaggedFiniteCheck()
    for batch in range(3):
        check.push(torch.tensor(1.0), 2, batch)
    check.push(torch.tensor(float("nan")), 2, 3)  # queued: this step goes on
    with pytest.raises(TrainingDiverged, match=r"^the training loss became nan at epoch 2, batch 3 \(the one "
                                               r"optimizer step taken on it is discarded: nothing after it is "
                                               r"validated or saved\); lower optim.lr"):
        check.push(torch.tensor(1.0), 2, 4)


def test_the_check_keeps_the_last_read_steps_loss_and_accuracy_for_the_progress_bar():
    check = LaggedFiniteCheck()
    check.push(torch.tensor(0.5), 0, 0, correct=torch.tensor([True, False, True, True]))
    assert check.last_step == {}  # nothing read yet
    check.push(torch.tensor(0.25), 0, 1, correct=torch.tensor([False, False, False, True]))
    assert check.last_step == {"train_loss_step": 0.5, "train_acc_step": 0.75}
    # Under DDP the pushed values are sums over the ranks: the bar shows the mean loss and the accuracy of all.
    check.push(torch.tensor(3.0), 0, 2, reduce=lambda value: value * 2, correct=torch.tensor([True, False]),
               ranks=2)
    check.flush()
    assert check.last_step == {"train_loss_step": 3.0, "train_acc_step": 0.5}


def test_the_progress_bar_reads_nothing_more_on_the_host_than_a_run_without_it(capsys):
    reads = {}
    for bar in ([], [StepValuesBar()]):
        module, data = mlp_module(), batches(12)
        optimizer, schedule = sgd_with_decaying_lr(module.parameters())
        module.configure_optimizers = lambda: ([optimizer], [{"scheduler": schedule, "interval": "step"}])
        trainer = quiet_trainer(max_epochs=1, log_every_n_steps=5, callbacks=bar, enable_progress_bar=bool(bar))
        with HostReads() as counted:
            trainer.fit(module, train_dataloaders=loader(data))
        reads[bool(bar)] = len(counted.read)
    assert reads[True] == reads[False]
    assert "train_loss_step" in capsys.readouterr().out  # what the bar showed


def test_flush_reads_the_queued_loss_at_once():
    check = LaggedFiniteCheck()
    check.push(torch.tensor(float("inf")), 0, 7)
    with pytest.raises(TrainingDiverged, match="became inf at epoch 0, batch 7"):
        check.flush()
    check.flush()  # nothing queued any more


def test_a_step_never_reads_its_own_loss_on_the_host():
    # On a GPU a host read of the current loss waits for the device. The check reads only the copy it queued a
    # step earlier (the lag is test_a_non_finite_loss_is_reported_at_the_next_step_naming_its_own_batch's), and
    # reads that copy's memory directly: no step makes the dispatcher read a tensor's value (.item(), float()).
    check = LaggedFiniteCheck()
    for step in range(5):
        loss = torch.tensor(float(step)) * 1
        with HostReads() as reads:
            check.push(loss, 0, step, correct=torch.tensor([True, False]))
        assert reads.read == []
    assert check.last_step == {"train_loss_step": 3.0, "train_acc_step": 0.5}


def test_the_module_queues_each_step_and_checks_before_validation_and_checkpoints():
    module = mlp_module()
    data = batches(3)
    images, labels, index = data[1]
    module.training_loss(data[0], 0)
    module.training_loss((images * float("nan"), labels, index), 1)  # queued, not yet read
    with pytest.raises(TrainingDiverged, match="became nan at epoch 0, batch 1"):
        module.training_loss(data[2], 2)
    module.training_loss((images * float("nan"), labels, index), 3)
    with pytest.raises(TrainingDiverged, match="batch 3"):
        module.on_save_checkpoint({})
    module.training_loss((images * float("nan"), labels, index), 4)
    with pytest.raises(TrainingDiverged, match="batch 4"):
        module.on_validation_epoch_start()
    module.training_loss((images * float("nan"), labels, index), 5)
    with pytest.raises(TrainingDiverged, match="batch 5"):
        module.train_epoch_stats()


def test_a_fit_takes_at_most_one_optimizer_step_on_a_non_finite_loss_and_saves_nothing_after_it(tmp_path):
    module, data = mlp_module(), batches(4)
    images, labels, index = data[2]
    data[2] = (images * float("nan"), labels, index)
    optimizer, schedule = sgd_with_decaying_lr(module.parameters())
    module.configure_optimizers = lambda: ([optimizer], [{"scheduler": schedule, "interval": "step"}])
    trainer = build_trainer(TRAINER_CONFIG, tmp_path, None, [])
    with pytest.raises(TrainingDiverged, match=r"at epoch 0, batch 2 \(the one optimizer step taken on it is "):
        trainer.fit(module, train_dataloaders=loader(data))
    assert trainer.global_step == 3  # batches 0 and 1, and batch 2's step, taken before the check read its loss
    assert not list(tmp_path.rglob("*.ckpt"))


# --- multi-sample dropout reduces its own logits --------------------------------------------------------------
def test_multisample_dropout_reduces_its_logits_for_the_module_and_extra_forward_passes():
    module = mlp_module([("multisample_dropout", {"rate": 0.5, "num_samples": 4}),
                         ("label_smoothing", {"eps": 0.1})])
    reg = module.regularizers[0]
    module.train()
    images = torch.randn(5, 1, 2, 2)
    torch.manual_seed(3)
    reduced = module.training_network(images)
    torch.manual_seed(3)
    raw = module.model(images)
    assert raw.shape == (4, 5, 3) and reduced.shape == (5, 3)
    torch.testing.assert_close(reduced, raw.mean(dim=0))
    targets = F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).float()
    per_mask = torch.stack([F.cross_entropy(raw[m], targets, reduction="none") for m in range(4)])
    torch.testing.assert_close(module.task_loss(raw, reduced, targets), per_mask.mean(dim=0))
    assert reg.task_loss(raw, targets) is not None and module.regularizers[1].task_loss(raw, targets) is None


def test_rankmixup_scores_mixed_copies_through_the_reduced_network():
    module = mlp_module([("rankmixup", {"variant": "mrl", "mixup_alpha": 2.0, "loss_weight": 0.1, "margin": 2.0,
                                        "num_mixes": 2}),
                         ("multisample_dropout", {"rate": 0.5, "num_samples": 4})])
    module.train()
    loss = module.training_loss(batches(1)[0], 0)
    assert loss.shape == () and torch.isfinite(loss)


# --- per-step work --------------------------------------------------------------------------------------------
class FakeTrainer:
    def __init__(self, loggers, progress_bar, global_step, should_stop=False):
        self.loggers, self.progress_bar_callback = loggers, progress_bar
        self.global_step, self.should_stop, self.log_every_n_steps = global_step, should_stop, 10


@pytest.mark.parametrize("loggers,progress_bar,global_step,should_stop,logged", [
    ([], None, 9, False, []),                            # logger=none, not on a terminal: nothing to show
    (["wandb"], None, 3, False, []),                     # between the log_every_n_steps writes
    (["wandb"], None, 9, False, ["train_loss_step"]),    # the 10th step is written
    (["wandb"], None, 19, False, ["train_loss_step"]),
    (["wandb"], None, 10, False, []),
    (["wandb"], None, 4, True, ["train_loss_step"]),     # the step where the run stops is written
    ([], "bar", 9, False, []),                           # a terminal's bar shows the finite check's values
    (["wandb"], "bar", 9, False, ["train_loss_step"]),
])
def test_the_step_loss_is_logged_only_where_it_is_shown(monkeypatch, loggers, progress_bar, global_step, should_stop,
                                                        logged):
    module = mlp_module()
    monkeypatch.setattr(ClassifierModule, "trainer", property(lambda self: self._trainer))
    module._trainer = FakeTrainer(loggers, progress_bar, global_step, should_stop)
    names = []
    module.log = lambda name, *args, **kwargs: names.append(name)
    module.log_step(torch.tensor(1.0), 2)
    assert names == logged


def test_batches_already_on_the_device_are_not_walked_again():
    datamodule = build_datamodule(dataset_config("synthetic"), seed=0)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert datamodule.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = datamodule.transfer_batch_to_device([batch[0].double(), batch[1]], torch.device("meta"), 0)
    assert [t.device.type for t in moved] == ["meta", "meta"]


def test_the_trainer_wraps_its_hooks_in_one_shared_context_that_does_nothing(tmp_path):
    profiler = build_trainer(TRAINER_CONFIG, tmp_path, None, []).profiler
    context = profiler.profile("[Callback]RunRecorder.on_train_batch_start")
    assert profiler.profile("[LightningModule]ClassifierModule.training_step") is context  # nothing built per hook
    ran = []
    with context:
        with context:  # hooks nest
            ran.append(True)
    assert ran == [True]
    with pytest.raises(ValueError, match="from the hook"):
        with context:
            raise ValueError("from the hook")
    assert profiler.summary() == ""


def loader(data) -> DataLoader:
    """`batches` as one Lightning dataloader."""
    return DataLoader(TensorDataset(*(torch.cat(column) for column in zip(*data))), batch_size=8)


def quiet_trainer(**settings) -> L.Trainer:
    return L.Trainer(**{"accelerator": "cpu", "logger": False, "enable_checkpointing": False,
                        "enable_progress_bar": False, "enable_model_summary": False, **settings})


def sgd_with_decaying_lr(parameters):
    """SGD whose learning rate changes at every step, so a schedule stepped out of order changes the weights."""
    optimizer = torch.optim.SGD(parameters, lr=0.1, momentum=0.9)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))


def test_the_module_steps_as_a_hand_written_loop_does():
    module, data = mlp_module(), batches(4)
    network = copy.deepcopy(module.model)
    optimizer, schedule = sgd_with_decaying_lr(module.parameters())
    module.configure_optimizers = lambda: ([optimizer], [{"scheduler": schedule, "interval": "step"}])
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(module, train_dataloaders=loader(data))
    assert trainer.global_step == 8
    hand_optimizer, hand_schedule = sgd_with_decaying_lr(network.parameters())
    for _ in range(2):
        for images, labels, _ in data:
            hand_optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(network(images), labels).backward()
            hand_optimizer.step()
            hand_schedule.step()
    for ours, hand in zip(module.model.state_dict().values(), network.state_dict().values()):
        torch.testing.assert_close(ours, hand)


class LinearSteps(L.LightningModule):
    """A linear model trained by Lightning's automatic optimization, or by a written-out step as regbench's module."""

    def __init__(self, automatic: bool):
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)
        self.automatic_optimization = automatic
        self.steps_taken = 0

    def training_step(self, batch, batch_idx):
        self.steps_taken += 1
        images, labels, _ = batch
        loss = F.cross_entropy(self.layer(images.flatten(1)), labels)
        if self.automatic_optimization:
            return loss
        self.optimizers().zero_grad()
        self.manual_backward(loss)
        self.optimizers().step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_load_checkpoint(self, checkpoint):
        upgrade_step_count(checkpoint)


def test_a_checkpoint_counted_by_automatic_optimization_resumes_at_its_global_step(tmp_path):
    automatic = quiet_trainer(max_steps=3)
    automatic.fit(LinearSteps(automatic=True), train_dataloaders=loader(batches(5)))
    automatic.save_checkpoint(tmp_path / "automatic.ckpt")
    resumed, module = quiet_trainer(max_steps=5), LinearSteps(automatic=False)
    resumed.fit(module, train_dataloaders=loader(batches(5)), ckpt_path=tmp_path / "automatic.ckpt")
    assert (module.steps_taken, resumed.global_step) == (2, 5)  # two more steps from 3, not five from 0
    resumed.save_checkpoint(tmp_path / "manual.ckpt")
    manual_checkpoint = torch.load(tmp_path / "manual.ckpt", weights_only=False)
    counted = manual_checkpoint["loops"]["fit_loop"]["epoch_loop.manual_optimization.optim_step_progress"]
    assert upgrade_step_count(manual_checkpoint)["loops"]["fit_loop"][
        "epoch_loop.manual_optimization.optim_step_progress"] == counted  # already counted there: left as is


def test_the_steps_that_log_are_the_steps_lightning_writes_to_its_loggers(tmp_path):
    module, decisions = mlp_module(), []
    step = module.training_step

    def recording_step(batch, batch_idx):
        trainer = module.trainer
        decisions.append((writes_logs_this_step(trainer), trainer._logger_connector.should_update_logs))
        return step(batch, batch_idx)

    module.training_step = recording_step
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module.configure_optimizers = lambda: ([optimizer], [torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0)])
    trainer = L.Trainer(accelerator="cpu", logger=CSVLogger(tmp_path), log_every_n_steps=3, max_steps=8,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=loader(batches(5)))
    ours, lightnings = zip(*decisions)
    assert ours == lightnings and ours == (False, False, True) * 2 + (False, False)  # 5 steps an epoch


def test_validation_metrics_are_logged_once_per_validation_from_that_validations_batches():
    module, logged = mlp_module(), []
    log_dict = module.log_dict
    module.log_dict = lambda metrics, **kwargs: logged.append(sorted(metrics)) or log_dict(metrics, **kwargs)
    trainer = quiet_trainer()
    for seed in (1, 2):  # the second validation must not count the first one's batches
        data = batches(3, seed)
        with torch.no_grad():
            module.eval()
            correct = sum(int((module(images).argmax(-1) == labels).sum()) for images, labels, _ in data)
        result = trainer.validate(module, dataloaders=loader(data), verbose=False)[0]
        assert result["val_acc"] == pytest.approx(correct / 24)
        torch.nn.init.normal_(module.model.head.weight)
    assert logged == [["val_acc", "val_ece", "val_nll"]] * 2
