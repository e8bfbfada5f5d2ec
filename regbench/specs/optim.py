"""The optimizer and schedule registries' declared entries (timm's SGDP/AdamP are imported only when used)."""
from regbench.registry import OPTIONAL, REQUIRED, Entry, Registry

# optim.project (Normalize-and-Project) applies to any optimizer: read by regbench.optim.projects_weights.
OPTIMIZERS = Registry("optimizer", "optim", context=("model",), shared=("project",), entries={
    "adamp": Entry("regbench.optim", {
        "lr": REQUIRED, "weight_decay": REQUIRED, "betas": OPTIONAL, "delta": OPTIONAL, "wd_ratio": OPTIONAL}),
    "adamw": Entry("regbench.optim", {"lr": REQUIRED, "weight_decay": REQUIRED, "betas": OPTIONAL}),
    "sgd": Entry("regbench.optim", {"lr": REQUIRED, "weight_decay": REQUIRED, "momentum": OPTIONAL,
                                    "nesterov": OPTIONAL}),
    "sgdp": Entry("regbench.optim", {
        "lr": REQUIRED, "weight_decay": REQUIRED, "momentum": OPTIONAL, "nesterov": OPTIONAL, "delta": OPTIONAL,
        "wd_ratio": OPTIONAL}),
})
SCHEDULES = Registry("schedule", "sched", context=("steps_per_epoch", "total_steps"), entries={
    "constant": Entry("regbench.optim", {"warmup_epochs": OPTIONAL}),
    "cosine": Entry("regbench.optim", {"warmup_epochs": OPTIONAL}),
})
