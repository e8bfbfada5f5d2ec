"""The training epoch's running sums as a torchmetrics Metric: summed over DDP ranks when read, and part of the
module's state dict, so a checkpoint taken mid-epoch carries the epoch's sums into the resumed run."""
from __future__ import annotations

import torch
from torchmetrics import Metric


class TrainEpochSums(Metric):
    """Loss sum, correct predictions and images seen, plus the accuracy split by whether the given label was
    corrupted (`noisy`). Counts are integers, so they add up exactly on every rank and across resumptions."""

    full_state_update = False
    # Read once per epoch; the hot loop only adds to device tensors.
    dist_sync_on_step = False

    def __init__(self) -> None:
        super().__init__(sync_on_compute=True)
        self.add_state("loss_sum", torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum", persistent=True)
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum", persistent=True)
        self.add_state("images", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum", persistent=True)
        # [correct on clean, clean seen, correct on noisy, noisy seen] w.r.t. the given labels.
        self.add_state("noise_split", torch.zeros(4, dtype=torch.long), dist_reduce_fx="sum", persistent=True)

    def update(self, loss: torch.Tensor, correct: torch.Tensor, noisy: torch.Tensor | None = None) -> None:
        """`loss`: the batch's mean loss; `correct`: (B,) bool; `noisy`: (B,) bool, whether each label was corrupted."""
        # In place: `+=` would also set the attribute again, through nn.Module's slow __setattr__, every step.
        batch = correct.shape[0]
        self.loss_sum.add_(loss.detach(), alpha=batch)
        self.correct.add_(correct.sum())
        self.images.add_(batch)
        if noisy is not None:
            self.noise_split.add_(torch.stack([(correct & ~noisy).sum(), (~noisy).sum(), (correct & noisy).sum(),
                                               noisy.sum()]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # Loaded sums count as updates: a run resumed at an epoch's last batch adds nothing before they are read.
        self._update_count = max(self._update_count, int(self.images > 0))

    def compute(self) -> dict[str, float]:
        loss_sum, correct, images = float(self.loss_sum), int(self.correct), int(self.images)
        seen = max(images, 1)
        clean_correct, clean_seen, noisy_correct, noisy_seen = self.noise_split.tolist()
        return {"train_loss": loss_sum / seen, "train_acc": correct / seen, "train_images": images,
                "train_acc_clean": clean_correct / clean_seen if clean_seen else float("nan"),
                "train_acc_noisy": noisy_correct / noisy_seen if noisy_seen else float("nan")}
