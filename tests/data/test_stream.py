"""The streaming path against the in-memory one: the same order, index and evaluation images; the same
augmentation semantics (random-resized-crop boxes as torchvision draws them, flip rate); resumption mid-epoch,
through Lightning's own SIGTERM handling, to the uninterrupted result; unreadable files in one line."""
import dataclasses
import math
import os
import signal

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import RandomResizedCrop

from regbench.data.images import resized_crop_boxes
from regbench.data.module import ImageDataModule
from regbench.data.stream import StreamingDataModule
from regbench.errors import UserError
from regbench.run.trainer import LastCheckpoint
from data_configs import label_shift, load_dataset
from image_trees import write_class_folders

SETTINGS = dict(batch_size=4, val_fraction=0.2, split_seed=0, seed=3, crop_padding=0, hflip=True,
                resized_crop=True, dataset="image_folder", **label_shift())


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    write_class_folders(root, 10)
    return root


def both_paths(root, num_workers=0, **settings):
    data = load_dataset("image_folder", download=False, root=str(root), split_seed=0, image_size=12, cache=False)
    memory = ImageDataModule(data.decode(), **{**SETTINGS, **settings})
    same_statistics = dataclasses.replace(data, mean=memory.mean.flatten().tolist(), std=memory.std.flatten().tolist())
    stream = StreamingDataModule(same_statistics, num_workers=num_workers, **{**SETTINGS, **settings})
    memory.setup()
    stream.setup()
    return memory, stream


def batches(loader):
    return [tuple(t.clone() for t in batch) for batch in loader]


def test_both_paths_give_the_same_order_index_labels_and_evaluation_images(tree):
    memory, stream = both_paths(tree)
    for epoch in range(2):
        memory.train_dataloader().set_epoch(epoch)
        stream.train_dataloader().set_epoch(epoch)
        ours, theirs = batches(memory.train_dataloader()), batches(stream.train_dataloader())
        assert len(ours) == len(theirs) == 18 // 4  # 8 training images per class, 2 held out for validation
        for (_, labels, index), (images, s_labels, s_index) in zip(ours, theirs):
            assert torch.equal(index, s_index) and torch.equal(labels, s_labels)
            assert images.shape == (4, 3, 12, 12) and images.dtype == torch.float32
    for split in ("val", "test"):
        loader = f"{split}_dataloader"
        ours, theirs = batches(getattr(memory, loader)()), batches(getattr(stream, loader)())
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) for a, b in zip(ours, theirs))


def test_upsampling_draws_the_same_indices_on_both_paths(tree):
    cooldown = {"type": "upsample", "tau": 1.0, "tau_end": 0.5, "switch_epoch": 1}
    memory, stream = both_paths(tree, balance=label_shift(balance=cooldown)["balance"])
    for epoch in (0, 1):  # before and after the cooldown's switch
        memory.train_dataloader().set_epoch(epoch)
        stream.train_dataloader().set_epoch(epoch)
        assert ([b[2].tolist() for b in memory.train_dataloader()]
                == [b[2].tolist() for b in stream.train_dataloader()])


def test_resized_crop_boxes_follow_torchvisions_random_resized_crop():
    n, height, width = 4000, 30, 50
    gen = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(torch.full((n,), height), torch.full((n,), width), gen)
    top, left, h, w = boxes.T.double()
    assert bool(((top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width)).all())
    torch.manual_seed(0)
    theirs = torch.tensor([RandomResizedCrop.get_params(torch.zeros(1, height, width), [0.08, 1.0], [3 / 4, 4 / 3])
                           for _ in range(n)]).double()
    for ours_values, their_values in ((h * w / (height * width), theirs[:, 2] * theirs[:, 3] / (height * width)),
                                      ((w / h).log(), (theirs[:, 3] / theirs[:, 2]).log())):
        # Same distribution: means and spreads agree within sampling error.
        assert abs(ours_values.mean() - their_values.mean()) < 4 * their_values.std() / math.sqrt(n)
        assert abs(ours_values.std() - their_values.std()) < 0.1 * their_values.std()
    # An image too thin for any box falls back to torchvision's central crop.
    thin = resized_crop_boxes(torch.tensor([100]), torch.tensor([2]), gen)[0].tolist()
    assert thin == list(RandomResizedCrop.get_params(torch.zeros(1, 100, 2), [0.08, 1.0], [3 / 4, 4 / 3]))


def test_both_paths_augment_with_the_same_semantics(tree, tmp_path):
    """On a left-to-right ramp image, the difference between an augmented image's right and left edges measures
    both augmentations: its sign is the flip, its size the crop's width relative to the image's."""
    memory, stream = both_paths(tree)
    ramp = torch.arange(0, 12 * 20, 20, dtype=torch.uint8).expand(3, 12, 12)
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp.permute(1, 2, 0).numpy()).save(path)
    n = 400
    in_memory = memory.augment(ramp.float().expand(n, 3, 12, 12), (12, 12), torch.Generator().manual_seed(1))
    streamed = torch.stack([stream.train_dataloader().files.augment(str(path), seed) for seed in range(n)]).float()
    assert streamed.shape == (n, 3, 12, 12)
    spans = [(images[:, 0, :, -1] - images[:, 0, :, 0]).mean(1) for images in (in_memory, streamed)]
    for span in spans:
        assert abs((span < 0).double().mean() - 0.5) < 0.08  # flipped half of the time
    widths = [span.abs() for span in spans]
    assert abs(widths[0].mean() - widths[1].mean()) < 0.08 * widths[1].mean()
    assert abs(widths[0].std() - widths[1].std()) < 0.15 * widths[1].std()


def test_a_sample_augments_the_same_whatever_the_number_of_workers(tree):
    _, single = both_paths(tree, num_workers=0)
    _, pooled = both_paths(tree, num_workers=2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
               for a, b in zip(batches(single.train_dataloader()), batches(pooled.train_dataloader())))


def test_a_resumed_stream_yields_the_rest_of_the_epoch_as_the_uninterrupted_one(tree):
    _, stream = both_paths(tree)
    loader = stream.train_dataloader()
    loader.set_epoch(1)
    whole = batches(loader)
    loader.set_epoch(1)
    iterator = iter(loader)
    next(iterator), next(iterator)
    state = loader.state_dict()
    _, fresh = both_paths(tree)
    fresh.train_dataloader().load_state_dict(state)
    rest = batches(fresh.train_dataloader())
    assert len(rest) == len(whole) - 2
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) for a, b in zip(whole[2:], rest))


def test_an_unreadable_file_met_while_streaming_is_named_in_one_line(tmp_path):
    write_class_folders(tmp_path, 5)
    memory, stream = both_paths(tmp_path)
    path = stream.splits["train"][0].paths[3]
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG broken")
    with pytest.raises(UserError, match=rf"^{path} is not a readable image \("):
        batches(stream.train_dataloader())


class Linear(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3 * 12 * 12, 3)
        self.seen = []

    def training_step(self, batch, batch_idx):
        images, labels, index = batch
        self.seen.append(index.tolist())
        return F.cross_entropy(self.net(images.flatten(1)), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TerminateAt(L.Callback):
    """Sends this process SIGTERM after batch `batch` of epoch `epoch`, as SLURM would before preempting."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


def fit(datamodule, tmp_path, callbacks=(), ckpt_path=None):
    torch.manual_seed(0)
    module = Linear()
    trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=True, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[LastCheckpoint(tmp_path / "last.ckpt", 1), *callbacks], accelerator="cpu")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module


def test_training_resumed_mid_epoch_on_the_stream_ends_as_the_uninterrupted_run(tree, tmp_path):
    _, stream = both_paths(tree)
    reference = fit(stream, tmp_path / "reference")
    _, stream = both_paths(tree)
    with pytest.raises(BaseException):
        fit(stream, tmp_path, callbacks=[TerminateAt(1, 2)])
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "position": 3}]
    _, stream = both_paths(tree)
    resumed = fit(stream, tmp_path, ckpt_path=tmp_path / "last.ckpt")
    assert resumed.seen == reference.seen[len(reference.seen) - len(resumed.seen):]
    assert len(resumed.seen) == 1 + 4  # the rest of epoch 1, then epoch 2
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), reference.state_dict().values()))


def test_rs2_subsets_are_the_same_on_both_paths(tree):
    memory, stream = both_paths(tree, rs2={"fraction": 0.5, "replacement": False})
    for epoch in range(3):  # 18 training images, rounds of 8: the third round is topped up from the pass's start
        memory.train_dataloader().set_epoch(epoch)
        stream.train_dataloader().set_epoch(epoch)
        ours = [b[2].tolist() for b in memory.train_dataloader()]
        assert ours == [b[2].tolist() for b in stream.train_dataloader()] and len(ours) == 2
