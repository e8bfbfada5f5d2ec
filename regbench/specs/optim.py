"""The optimizer and schedule registries' declared entries (timm's SGDP/AdamP are imported only when used)."""
from regbench.errors import check_non_negative, check_positive
from regbench.registry import REQUIRED, Entry, Registry
from regbench.specs.values import below_one, betas, boolean, unit_interval

# The rules every optimizer's shared parameters follow; AdamP/SGDP add their projection's.
LR_WD = {"lr": check_positive, "weight_decay": check_non_negative, "project": boolean}
PROJECTION = {"delta": check_positive, "wd_ratio": unit_interval}

# optim.project (Normalize-and-Project) applies to any optimizer: read by regbench.optim.projects_weights.
OPTIMIZERS = Registry("optimizer", "optim", context=("model",), shared=("project",), entries={
    "adamp": Entry("regbench.optim", {
        "lr": REQUIRED, "weight_decay": REQUIRED, "betas": REQUIRED, "delta": REQUIRED, "wd_ratio": REQUIRED},
        {**LR_WD, **PROJECTION, "betas": betas}),
    "adamw": Entry("regbench.optim", {"lr": REQUIRED, "weight_decay": REQUIRED, "betas": REQUIRED},
                   {**LR_WD, "betas": betas}),
    "sgd": Entry("regbench.optim", {"lr": REQUIRED, "weight_decay": REQUIRED, "momentum": REQUIRED,
                                    "nesterov": REQUIRED},
                 {**LR_WD, "momentum": below_one, "nesterov": boolean}),
    "sgdp": Entry("regbench.optim", {
        "lr": REQUIRED, "weight_decay": REQUIRED, "momentum": REQUIRED, "nesterov": REQUIRED, "delta": REQUIRED,
        "wd_ratio": REQUIRED},
        {**LR_WD, **PROJECTION, "momentum": below_one, "nesterov": boolean}),
})
SCHEDULES = Registry("schedule", "sched", context=("steps_per_epoch", "total_steps"), entries={
    "constant": Entry("regbench.optim", {"warmup_epochs": REQUIRED}, {"warmup_epochs": check_non_negative}),
    "cosine": Entry("regbench.optim", {"warmup_epochs": REQUIRED}, {"warmup_epochs": check_non_negative}),
})
