"""Commands that train nothing (help, compare, a printed config, every config mistake) never import torch,
Lightning, W&B or timm: the real command under `python -X importtime`, which lists every module it imported."""
from __future__ import annotations

import subprocess
import sys

import pytest

from regbench.devices import has_no_gpu

pytestmark = pytest.mark.slow
# scikit-learn too: even a digits run reads sklearn's digits file without importing it.
HEAVY = {"torch", "lightning", "wandb", "timm", "sklearn"}


def imported(args: list[str], cwd, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "regbench", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    return result, {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")}


def imported_heavy(args: list[str], cwd, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The heavy packages the command loaded, known by their submodules: importtime lists a package's own line
    only for some ways of importing it, and lists an import that failed at once (timm's guarded `import wandb`,
    refused) as if it had loaded."""
    result, modules = imported(args, cwd, env)
    return result, {name.split(".")[0] for name in modules if "." in name} & HEAVY


@pytest.mark.parametrize("args,code", [
    (["--help"], 0),
    (["compare", "--help"], 0),
    (["score", "--help"], 0),
    (["soup", "--help"], 0),
    (["soup", "nowhere", "--recipe", "greedy"], 2),
    (["probe", "--help"], 0),
    (["probe", "no_such_dir"], 2),
    (["probe", ".", "--checkpoint", "first"], 2),
    (["train", "--help"], 0),
    (["train", "--info"], 0),
    (["train", "--cfg", "job"], 0),
    (["train", "--cfg", "hydra"], 0),
    (["train", "--cfg", "all", "--resolve", "data=cifar10", "backbone=timm", "optim=sgdp", "regularizer=[droppath]"],
     0),
    (["train", "norm=no_such_norm"], 2),
    (["train", "+trainer.max_epoch=5"], 2),
    (["train", "~data.batch_size"], 2),
    (["train", "regularizer=[dropout]", "regularizer.dropout.rat=0.1"], 2),
    (["train", "optim.lrr=0.1"], 2),
    (["train", "seed=-1"], 2),
    (["train", "exp_name="], 2),
    (["train", "trainer.max_epochs=0"], 2),
    (["train", "data.batch_size=0", "--cfg", "job"], 2),  # a data value is refused even when only printing
    (["train", "data.noise.rate=1.5"], 2),
    (["train", "data=cifar10", "data.augment.random_resized_crop=yes"], 2),
    (["train", "logger.wandb.mode=loud"], 2),
    (["train", "-m", "norm=batchnorm,no_such_norm"], 2),
    (["train", "-m", "seed=0,1", "--cfg", "job"], 2),
    (["train", "-m", "seed=0", "hydra/sweeper=optuna"], 2),
    # Mistakes found from the run's planned shape, the norm's traits or this machine's devices.
    (["train", "data.batch_size=5000"], 2),
    (["train", "-m", "seed=0,1", "data.batch_size=5000"], 2),
    (["train", "data.augment.crop_padding=8"], 2),
    (["train", "data.sampler=rs2", "data.rs2.fraction=0.01"], 2),
    (["train", "backbone=vit_tiny"], 2),
    (["train", "data.batch_size=1"], 2),
    (["train", "data=mnist", "data.root=nowhere"], 2),
    (["train", "data=cifar10", "data.root=nowhere"], 2),
    (["train", "data=mnist", "data.root=null"], 2),
    (["train", "data=image_folder"], 2),
    (["train", "calibrate=[temperature]", "data.val_fraction=0"], 2),
    (["train", "data.crafted_val.shifts=[saturate]"], 2),
    (["train", "regularizer=[ema,swa]"], 2),
    (["train", "regularizer=[sade,coteaching]"], 2),
    (["train", "norm=groupnorm", "norm.groups=3"], 2),
    # Value rules that were checked only when the component was built (they imported torch before).
    (["train", "regularizer=[swa]", "regularizer.swa.start=1.5"], 2),
    (["train", "regularizer=[cutout]", "regularizer.cutout.length=-1"], 2),
    (["train", "regularizer=[dropblock]", "regularizer.dropblock.stages=[0]"], 2),
    (["train", "calibrate=[h_calibration]", "calibrate.h_calibration.window=3"], 2),
    (["train", "eval=[farms]", "eval.farms.min_eigenvalues=1"], 2),
    (["train", "backbone=wrn16_4", "backbone.depth=11"], 2),
    # Settings harmful on the run's shape (the components' run checks, regbench.specs.run_checks).
    (["train", "regularizer=[cutout]", "regularizer.cutout.length=100"], 2),
    (["train", "regularizer=[ema]", "regularizer.ema.decay=0.9999", "regularizer.ema.warmup=false"], 2),
    (["train", "norm=ghost_batchnorm", "norm.virtual_batch_size=0.01"], 2),
    (["score", "scores", "data=mnist", "data.root=nowhere"], 2),
    (["score", "scores", "data.batch_size=5000"], 2),
    pytest.param(["train", "trainer.accelerator=gpu"], 2,
                 marks=pytest.mark.skipif(not has_no_gpu(), reason="this machine may have a GPU")),
])
def test_commands_that_train_nothing_import_no_torch(args, code, tmp_path, cli_env):
    result, heavy = imported_heavy(args, tmp_path, cli_env)
    assert result.returncode == code, result.stderr[-2000:]
    assert heavy == set()
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_mistakes_that_need_the_model_code_import_torch_alone(tmp_path, cli_env):
    """The checks that build the components (here a regularizer's check of the optimizer it is stacked with) import
    torch and the selected components' modules: no torchvision (an unselected regularizer's import), Lightning, W&B
    or timm."""
    args = ["regularizer=[weight_compander]", "optim=adamw"]
    result, modules = imported(["train", *args], tmp_path, cli_env)
    said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 2 and len(said) == 1, result.stderr[-2000:]
    assert said[0].startswith("regbench train: error: regularizer=weight_compander needs optim=sgd")
    assert {name.split(".")[0] for name in modules if "." in name} & (HEAVY | {"torchvision"}) == {"torch"}
    assert not (tmp_path / "outputs").exists()


def test_the_other_commands_do_not_load_hydra(tmp_path, cli_env):
    """Only `train` is a Hydra app: `compare` and the dispatcher itself do not pay for Hydra's import."""
    result, modules = imported(["compare", "--help"], tmp_path, cli_env)
    assert result.returncode == 0 and "hydra" not in modules


def test_a_run_imports_wandb_only_for_its_logger_and_timm_only_for_a_timm_component(tmp_path, cli_env):
    tiny = ["trainer.max_epochs=1", "backbone.widths=[8]", "hydra.run.dir=run"]
    result, heavy = imported_heavy(["train", "logger=none", *tiny], tmp_path, cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert heavy == {"torch", "lightning"}
    # timm tries to import W&B for its own scripts: a timm component alone does not load it.
    result, heavy = imported_heavy(["train", "logger=none", "optim=sgdp", *tiny[:2], "hydra.run.dir=timm_run"],
                                   tmp_path, cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert heavy == {"torch", "lightning", "timm"}
