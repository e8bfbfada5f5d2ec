"""Policy Gradient-Driven Noise Mask (Yavuz & Yang, arXiv 2406.14568; github.com/ogrenenmakine/
Policy-Gradient-Driven-Noise-Mask). Pre-training: a light policy network samples, per image, a grid of Beta-distributed
noise-mask cells; the classifier trains on the image times the upsampled, blurred mask, and the policy is trained
by REINFORCE with the classifier's cross-entropy on the masked image as the cost. After `pretrain_epochs` epochs
the policy is dropped: the "heated" classifier is fine-tuned on clean images, and it is always evaluated on clean
images. The policy has its own optimizer (Adam), stepped from the policy's own gradient, so the classifier's
optimizer, schedule, gradient scaling and clipping never see it."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from regbench.devices import local_world_size
from regbench.errors import UserError
from regbench.regularizers.base import Regularizer, TrainProgress, soft_cross_entropy
from regbench.regularizers.noise_mask_policy import MaskPolicy, mask_image, reinforce_loss
from regbench.runshape import RunShape, is_fraction
from regbench.specs.regularizers import REGULARIZERS, Exclusion
from regbench.specs.run_checks import noise_mask_pretrain_count


@REGULARIZERS.register("noise_mask")
class NoiseMask(Regularizer, nn.Module):
    name = "noise_mask"

    def __init__(self, *, pretrain_epochs: int | float, grid: int, blur_sigma: float, policy_width: int,
                 policy_lr: float, baseline: str, prior_weight: float, prior_momentum: float, seed: int):
        nn.Module.__init__(self)
        self.pretrain_epochs, self.blur_sigma, self.baseline = pretrain_epochs, float(blur_sigma), baseline
        # Pre-training epochs: a fraction of the run's epochs is resolved by fit_run, which sees the run's length
        # (regbench.run.train.build_run calls it before the module is built).
        self.pretrain_count: int | None = None if is_fraction(pretrain_epochs) else pretrain_epochs
        self.policy = MaskPolicy(grid, policy_width, float(prior_weight), float(prior_momentum), seed)
        # Built with the policy, so a checkpoint's optimizer state loads into it whenever the state dict is loaded.
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=float(policy_lr))
        self.epochs_done = 0  # training epochs finished: the phase, saved in checkpoints (extra state)
        # A checkpoint's policy optimizer state, loaded at the next policy step: Lightning restores the state dict
        # before it moves the module to the training device, and Adam casts its state to the parameters' device
        # when it is loaded.
        self._saved_optimizer_state: dict[str, Any] | None = None
        self._log_prob: torch.Tensor | None = None  # of this step's masks, until the loss hook trains the policy

    @property
    def pretraining(self) -> bool:
        if self.pretrain_count is None:
            raise RuntimeError("regularizer=noise_mask: fit_run(shape) resolves a fractional pretrain_epochs "
                               "before training")
        return self.epochs_done < self.pretrain_count

    def fit_run(self, shape: RunShape) -> None:
        self.pretrain_count = noise_mask_pretrain_count(self.pretrain_epochs, shape.max_epochs)

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        for other in others:
            if Exclusion.INPUT_MIXING in other.exclusive:
                raise UserError(f"regularizer=noise_mask cannot be stacked with {other.name}: mixing blends one "
                                f"image's noise mask into another's loss, so the policy's reward would not be its own")
            if other.copies_network:
                raise UserError(f"regularizer=noise_mask cannot be stacked with {other.name}: its two networks "
                                f"would give two rewards for one mask")
        world = local_world_size(run["trainer"])
        if world > 1:
            raise UserError(f"regularizer=noise_mask trains its policy on one device; trainer.devices={world} would "
                            f"train a different policy on each; use trainer.devices=1")

    def sample_mask(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, 1, H, W) masks for `images` and their (B,) log-probabilities (the cells' joint log-density, with
        the policy's graph). The policy runs in float32 outside any autocast: a Beta log-density in half precision
        is not usable."""
        with torch.autocast(images.device.type, enabled=False):
            dist = self.policy(images.detach().float())
            # Drawn from torch's global generator (seeded with the run; Beta sampling takes no generator); kept off
            # 0 and 1, where a shape parameter below 1 gives an infinite log-density.
            tiny = torch.finfo(torch.float32).eps
            cells = dist.sample().clamp(tiny, 1 - tiny)
            log_prob = dist.log_prob(cells).sum(dim=1)
            mask = mask_image(cells, *images.shape[-2:], self.blur_sigma * min(images.shape[-2:]))
        return mask.to(images.dtype), log_prob

    def mix_batch(self, images, targets, index):
        if not self.pretraining:
            return images, targets
        mask, self._log_prob = self.sample_mask(images)
        return images * mask, targets

    def loss(self, per_sample, logits, targets, index, model):
        """Trains the policy on this step's masks: the cost of each is the classifier's cross-entropy on its masked
        image (before the other loss-space techniques reshape the loss). The classifier's loss is left as it is."""
        if self._log_prob is None:
            return per_sample
        log_prob, self._log_prob = self._log_prob, None
        cost = soft_cross_entropy(logits.detach().float(), targets.float())
        policy_loss = reinforce_loss(log_prob, cost, self.baseline)
        if self._saved_optimizer_state is not None:
            self.policy_optimizer.load_state_dict(self._saved_optimizer_state)
            self._saved_optimizer_state = None
        self.policy_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward(inputs=list(self.policy.parameters()))
        self.policy_optimizer.step()
        return per_sample

    def on_train_batch_end(self, model: nn.Module, progress: TrainProgress) -> None:
        # At the epoch's last step, before validation and the epoch's checkpoint: a resumed run goes on in the phase
        # its checkpoint was in.
        if progress.epoch_finished:
            self.epochs_done = progress.epoch + 1

    def get_extra_state(self) -> dict[str, Any]:
        optimizer_state = self._saved_optimizer_state or self.policy_optimizer.state_dict()
        return {"epochs_done": self.epochs_done, "policy_optimizer": optimizer_state}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.epochs_done = int(state["epochs_done"])
        self._saved_optimizer_state = state["policy_optimizer"]


def plain_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The classifier's state dict in a noise-mask run's checkpoint state dict (`checkpoint["state_dict"]`): the
    entries under `prefix`, without it (the policy lives under `regularizer_state.noise_mask.`); it loads into the
    backbone built without the regularizer."""
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


__all__ = ["NoiseMask", "plain_state_dict"]
