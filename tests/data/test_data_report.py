"""The realised noise and the per-class counts reach the experiment logger (W&B config / CSV hparams)."""
import torch
from data_configs import label_shift

from regbench.data.base import ImageData
from regbench.data.module import ImageDataModule
from regbench.data.report import label_sections, log_label_report


class RecordingLogger:
    def __init__(self):
        self.hyperparams, self.metrics = {}, {}

    def log_hyperparams(self, params):
        self.hyperparams.update(params)

    def log_metrics(self, metrics, step):
        self.metrics.update(metrics)


def noisy_long_tail_module() -> ImageDataModule:
    labels = torch.arange(3).repeat_interleave(100)
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    data = ImageData(images, labels, images[:6], labels[:6], ["a", "b", "c"], (0.5,), (0.25,), hflip_ok=False)
    sections = label_shift(noise={"type": "symmetric", "rate": 0.5, "convention": "uniform_other",
                                  "apply_to_val": True, "seed": 3},
                           imbalance={"type": "step", "factor": 4.0, "minority_fraction": 0.34})
    return ImageDataModule(data, batch_size=4, val_fraction=0.2, split_seed=0, seed=0, crop_padding=0, hflip=False,
                           dataset="synthetic", **sections)


def test_noise_and_counts_are_logged_and_reported():
    module = noisy_long_tail_module()
    logger = RecordingLogger()
    log_label_report(logger, module)
    noise = logger.hyperparams["noise"]
    assert logger.metrics["noise/realised_rate"] == noise["realised_rate"] == 0.5  # 40, 40, 10 -> 20, 20, 5 flipped
    assert logger.hyperparams["imbalance"]["train_counts"] == [80, 80, 20]
    assert len(noise["transition_matrix"]) == 3 and noise["transition_matrix"][2][2] == 0.5
    assert noise["val_realised_rate"] == 0.5
    # The clean labels are kept; the mask marks exactly the changed training labels.
    assert torch.equal(module.is_noisy, module.splits["train"][1] != module.clean_train_labels)
    sections = label_sections(module, [1.0, 0.5, 0.0])
    assert sections["balanced_acc"] == 0.5 and sections["per_class_acc"] == [1.0, 0.5, 0.0]
