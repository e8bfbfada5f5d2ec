"""Inputs that used to pass the config check and fail later (or be ignored): each is one line naming the bad
value, exit code 2, and nothing written. In process, through the CLI entry (the real command is in tests/e2e)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.fabric.accelerators.cuda import num_cuda_devices

from regbench.run.cli import main as train_main
from regbench.sweeps.preflight import preflight
from regbench.command import first_missing, nearest_existing
from regbench.config.keys import check_override_keys
from regbench.devices import DeviceMemory
from regbench.errors import ParamError, UserError
from regbench.regularizers import MemoryBudget, create_regularizer


def refused(args: list[str], tmp_path: Path, monkeypatch, capsys) -> str:
    """Run `regbench train ARGS logger=none` in tmp_path; it must exit 2 with one line and write nothing."""
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    assert train_main([*args, "logger=none"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("regbench train: error: "), stderr
    assert set(tmp_path.iterdir()) == before
    return stderr.strip().removeprefix("regbench train: error: ")


@pytest.mark.parametrize("args,message", [
    (["seed=4294967296"], "seed=4294967296 is invalid: a seed must be an integer from 0 to 4294967295"),
    (["data.split_seed=-1"], "data.split_seed=-1 is invalid: a seed must be an integer from 0 to 4294967295"),
    (["data.imbalance.seed=5000000000"], "data.imbalance.seed=5000000000 is invalid"),
    (["+hparams_search=cutmix_optuna", "hydra.sweeper.sampler.seed=-1"], "hydra.sweeper.sampler.seed=-1 is invalid"),
    (["-m", "seed=0,4294967296"], "seed=4294967296 is invalid: a seed must be an integer from 0 to 4294967295 "
                                  "(numpy's 32-bit seeds) (in the sweep job seed=4294967296 logger=none)"),
])
def test_seeds_outside_numpys_range_are_refused_at_every_seed_key(args, message, tmp_path, monkeypatch, capsys):
    # The sweep's job 0 (seed=0) is fine: the bad job 1 fails the sweep before it starts (nothing written).
    assert refused(args, tmp_path, monkeypatch, capsys).startswith(message)


def test_a_sweep_and_a_printed_config_cannot_be_asked_at_once(tmp_path, monkeypatch, capsys):
    # Hydra runs one of them, and would refuse the pair with a traceback.
    assert refused(["--cfg", "job", "-m", "seed=0,1"], tmp_path, monkeypatch, capsys) == (
        "--multirun and --cfg cannot be combined: a command runs, sweeps or prints its config; see regbench train "
        "--help")


def test_an_output_directory_where_nothing_can_be_made_is_refused_though_its_mode_bits_allow_root(
        tmp_path, monkeypatch, capsys):
    assert refused(["hydra.run.dir=/proc/regbench-run"], tmp_path, monkeypatch, capsys) == (
        "hydra.run.dir='/proc/regbench-run' is invalid: '/proc' is not writable here; choose a directory you can write")


def test_the_folder_a_command_would_create_first_is_the_outermost_missing_one(tmp_path):
    assert first_missing(tmp_path) is None
    assert first_missing(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    assert nearest_existing(tmp_path / "a" / "b") == tmp_path


def test_the_largest_seed_is_accepted():
    preflight(["seed=4294967295", "data.split_seed=4294967295"], multirun=False, writes=False)


def test_crop_padding_must_be_smaller_than_the_declared_images(tmp_path, monkeypatch, capsys):
    message = refused(["data=synthetic", "data.image_size=6", "data.augment.crop_padding=6"], tmp_path, monkeypatch,
                      capsys)
    assert message == ("data.augment.crop_padding=6 is invalid: reflect padding must be smaller than the 6x6 images "
                       "(at most 5)")
    preflight(["data=synthetic", "data.image_size=6", "data.augment.crop_padding=5"], multirun=False, writes=False)


def test_printing_the_config_runs_only_the_checks_that_need_no_model_code():
    # Crop padding is checked against the dataset's facts with the model code: a run refuses it, --cfg prints.
    overrides = ["data=synthetic", "data.image_size=6", "data.augment.crop_padding=6"]
    (job,) = preflight(overrides, multirun=False, writes=False, builds=False)
    assert (job.overrides, job.config["data"]["augment"]["crop_padding"], job.inactive) == (overrides, 6, [])
    with pytest.raises(UserError, match="^data.augment.crop_padding=6 is invalid"):
        preflight(overrides, multirun=False, writes=False)
    with pytest.raises(UserError, match="^seed=-1 is invalid"):  # the first stage refuses even when printing
        preflight([*overrides, "seed=-1"], multirun=False, writes=False, builds=False)


def test_a_sweep_job_with_too_much_crop_padding_fails_before_the_first_job_trains(tmp_path, monkeypatch, capsys):
    message = refused(["-m", "data.augment.crop_padding=1,8", "hydra.sweep.dir=sweep"], tmp_path, monkeypatch, capsys)
    assert message.startswith("data.augment.crop_padding=8 is invalid: reflect padding must be smaller than the 8x8")


def test_multisample_dropout_memory_bound_by_hand():
    # Per sample: batch 4 x (2 x 3 features + 2 classes) float32 values = (24 + 8) * 4 = 128 bytes; 900 bytes
    # hold 7 samples.
    budget = MemoryBudget(batch_size=4, num_features=3, num_classes=2,
                          memory=lambda: DeviceMemory(900, "a test device"))
    create_regularizer("multisample_dropout", rate=0.5, num_samples=7).check_memory(budget)
    with pytest.raises(ParamError) as err:
        create_regularizer("multisample_dropout", rate=0.5, num_samples=8).check_memory(budget)
    assert str(err.value) == ("num_samples=8 is invalid: must be at most 7: 8 dropout copies of the 4x3 features and "
                              "4x2 logits need 1.0 KB in float32, more than the 900.0 B of a test device")


def test_multisample_dropout_asking_for_terabytes_is_refused(tmp_path, monkeypatch, capsys):
    message = refused(["regularizer=[multisample_dropout]", "regularizer.multisample_dropout.num_samples=1000000000"],
                      tmp_path, monkeypatch, capsys)
    assert message.startswith("regularizer.multisample_dropout.num_samples=1000000000 is invalid: must be at most ")
    # 64 images x (2 x 128 features of the default convnet + 10 classes) x 4 bytes x 1e9 samples = 68.1 TB
    assert "of the 64x128 features and 64x10 logits need 68.1 TB in float32" in message


def test_an_output_directory_that_is_or_lies_under_a_file_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "taken").write_text("a file")
    assert refused(["hydra.run.dir=taken"], tmp_path, monkeypatch, capsys) == (
        "hydra.run.dir='taken' is invalid: it is 'taken', which is not a directory; choose another directory")
    assert refused(["-m", "seed=0,1", "hydra.sweep.dir=taken/sweep"], tmp_path, monkeypatch, capsys) == (
        "hydra.sweep.dir='taken/sweep' is invalid: it lies under 'taken', which is not a directory; choose another "
        "directory")
    assert refused(["+hparams_search=cutmix_optuna", "hydra.sweep.dir=taken/deeper/search"], tmp_path, monkeypatch,
                   capsys).startswith("hydra.sweep.dir='taken/deeper/search' is invalid: it lies under 'taken'")


def test_an_accelerator_this_machine_lacks_is_refused(tmp_path, monkeypatch, capsys):
    gpus = num_cuda_devices()
    if gpus:
        message = refused(["trainer.accelerator=gpu", f"trainer.devices={gpus + 1}"], tmp_path, monkeypatch, capsys)
        assert message.startswith(f"trainer.devices={gpus + 1} is invalid: this machine has {gpus} CUDA device(s)")
    else:
        message = refused(["trainer.accelerator=cuda"], tmp_path, monkeypatch, capsys)
        assert message.startswith("trainer.accelerator='cuda' is invalid: this machine has no CUDA device")
    assert refused(["trainer.accelerator=mps"], tmp_path, monkeypatch, capsys).startswith(
        "trainer.accelerator='mps' is invalid: this machine has no MPS device")


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS may have Apple's MPS")
def test_a_machine_without_a_gpu_is_known_without_torch(tmp_path, monkeypatch):
    from regbench import devices

    monkeypatch.setattr(devices, "ROCM_DEVICE", str(tmp_path / "kfd"))
    monkeypatch.setattr(devices, "loadable", lambda library: library != devices.CUDA_DRIVER_LIBRARY)
    assert devices.has_no_gpu()
    assert devices.training_accelerator({"accelerator": "auto", "devices": 1}) == "cpu"
    (tmp_path / "kfd").touch()  # a ROCm device: torch must count it
    assert not devices.has_no_gpu()
    (tmp_path / "kfd").unlink()
    monkeypatch.setattr(devices, "loadable", lambda library: True)  # an NVIDIA driver: torch must count its GPUs
    assert not devices.has_no_gpu()


def test_on_a_machine_with_a_gpu_driver_the_other_planned_mistakes_come_before_the_device_count(monkeypatch):
    """Counting a driver's devices imports torch and Lightning: a planned mistake is found without it."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict

    from regbench import devices
    from regbench.config import planned

    counted = []
    monkeypatch.setattr(devices, "has_no_gpu", lambda: False)
    monkeypatch.setattr(devices, "_available", lambda: counted.append(True) or {"cpu": 1, "cuda": 1, "mps": 0})
    monkeypatch.setattr(planned, "_PLANNED", {})
    for overrides in (["data.batch_size=5000"], ["data.augment.crop_padding=8"], ["backbone=vit_tiny"],
                      ["norm=groupnorm", "norm.groups=3"], ["regularizer=[ema,swa]"]):
        with initialize_config_module("regbench.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        with open_dict(cfg):
            cfg.run_dir = "unused"
        with pytest.raises(UserError):
            planned.check_planned_run(OmegaConf.to_container(cfg, resolve=True))
    assert counted == []
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["trainer.accelerator=gpu", "trainer.devices=2"])
    with open_dict(cfg):
        cfg.run_dir = "unused"
    with pytest.raises(UserError, match=r"^trainer.devices=2 is invalid: this machine has 1 CUDA device\(s\)"):
        planned.check_planned_run(OmegaConf.to_container(cfg, resolve=True))
    assert counted == [True]


def test_jobs_for_another_machine_are_not_held_to_this_ones_accelerators():
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict

    from regbench.config.validate import validate_config

    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["trainer.accelerator=mps"])
    with open_dict(cfg):
        cfg.run_dir = "unused"
    validate_config(OmegaConf.to_container(cfg, resolve=True), on_this_machine=False)


@pytest.mark.parametrize("args,message", [
    (["+trainer.max_epoch=5"], "trainer.max_epoch=5 is not a key regbench reads (keys of trainer: accelerator, "
                               "channels_last, checkpoint_every_n_epochs, compile, deterministic, devices, max_epochs, "
                               "precision, strategy); did you mean max_epochs?"),
    (["+calibrat=[x]"], "calibrat=[x] is not a key regbench reads (top-level keys: backbone, calibrate, data, "
                        "eval, exp_name, init, logger, norm, optim, optimized_metric, regularizer, run_dir, sched, "
                        "seed, sweep_summary, trainer); did you mean calibrate?"),
    (["+calibrate.temperature.max_iter=5"], "calibrate.temperature.max_iter=5 sets a parameter of calibrator "
                                            "temperature, which is not selected (calibrate=[]); select it first: "
                                            "calibrate=[temperature]"),
    (["calibrate=[temperature]", "+calibrate.temperature.lr=0.1"], "calibrate.temperature.lr=0.1 is not a key "
                                                                   "regbench reads (keys of calibrate.temperature: "
                                                                   "max_iter)"),
    (["calibrate=[temperature]", "~calibrate.temperature.max_iter"], "~calibrate.temperature.max_iter removes "
                                                                     "calibrate.temperature.max_iter, which regbench "
                                                                     "reads"),
    (["+data.foo=1"], "data.foo=1 is not a key regbench reads (keys of data: augment, balance, batch_size, "
                      "crafted_val, download, holdout_classes, imbalance, name, noise, prune, root, rs2, sampler, "
                      "split_seed, test_fraction, val_fraction)"),
    (["+optim.momentm=0.9"], "optim.momentm=0.9 is not a key regbench reads (keys of optim: lr, momentum, name, "
                             "nesterov, project, weight_decay); did you mean momentum?"),
    (["++data.augment.hflp=true"], "data.augment.hflp=true is not a key regbench reads (keys of data.augment: "
                                   "crop_padding, hflip, random_resized_crop); did you mean hflip?"),
    (["data=mnist", "+data.cahce=false"], "data.cahce=false is not a key regbench reads (keys of data: augment, "
                                          "balance, batch_size, cache, crafted_val, download"),
    (["logger=csv", "+logger.run_dir=elsewhere"], "logger.run_dir=elsewhere is not a key regbench reads (keys of "
                                                  "logger: name)"),
    (["+regularizer.cutmix.alpha=0.5"], "regularizer.cutmix.alpha=0.5 sets a parameter of regularizer cutmix, which "
                                        "is not selected (regularizer=[none]); select it first: regularizer=[cutmix]"),
    (["regularizer=[mixup]", "regularizer.cutmix.alpha=0.5"], "regularizer.cutmix.alpha=0.5 sets a parameter of "
                                                              "regularizer cutmix, which is not selected "
                                                              "(regularizer=[mixup])"),
    (["regularizer=[cutmix]", "+regularizer.cutmix.seed=3"], "regularizer.cutmix.seed=3 is not a key regbench reads "
                                                             "(keys of regularizer.cutmix: alpha, box, prob); "
                                                             "regbench sets it"),
    (["~trainer.max_epochs"], "~trainer.max_epochs removes trainer.max_epochs, which regbench reads; set a value "
                              "instead (trainer.max_epochs=VALUE)"),
    (["~norm"], "~norm removes norm, which regbench reads"),
    # Keys whose factories have defaults too: the YAML's default is the one a run uses, never the code's.
    (["data=mnist", "~data.cache"], "~data.cache removes data.cache, which regbench reads; set a value instead"),
    (["norm=ghost_batchnorm", "~norm.virtual_batch_size"], "~norm.virtual_batch_size removes norm.virtual_batch_size"),
])
def test_keys_no_component_reads_are_refused(args, message, tmp_path, monkeypatch, capsys):
    assert refused(args, tmp_path, monkeypatch, capsys).startswith(message)


@pytest.mark.parametrize("overrides", [
    ["backbone=timm", "backbone.model_name=test_resnet", "+backbone.model_kwargs.drop_rate=0.1"],  # YAML's {}: open
    ["++trainer.max_epochs=3"],  # an existing key: a plain override
])
def test_keys_components_read_are_accepted(overrides):
    preflight(overrides, multirun=False, writes=False)


def test_a_parameter_the_yaml_leaves_out_may_be_added_as_the_factory_reads_it():
    # A groupnorm option whose YAML omits eps: the factory's signature makes +norm.eps known.
    base = {"norm": {"name": "groupnorm", "groups": 32}}
    overrides = OverridesParser.create().parse_overrides(["+norm.eps=0.001"])
    check_override_keys(overrides, base)
    with pytest.raises(UserError, match=r"^norm.epsilon=0.001 is not a key regbench reads \(keys of norm: eps, "
                                        r"groups, name\); did you mean eps\?$"):
        check_override_keys(OverridesParser.create().parse_overrides(["+norm.epsilon=0.001"]), base)


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg", "all", "--resolve"], ["--cfg", "job", "-p", "data"]])
def test_information_flags_check_the_config_like_a_run(flags, tmp_path, monkeypatch, capsys):
    assert refused([*flags, "seed=-1"], tmp_path, monkeypatch, capsys).startswith("seed=-1 is invalid")


def test_a_mistake_in_hydras_own_flags_is_one_line(tmp_path, monkeypatch, capsys):
    assert refused(["--cfg", "everything"], tmp_path, monkeypatch, capsys) == (
        "argument --cfg/-c: invalid choice: 'everything' (choose from 'job', 'hydra', 'all'); see regbench train "
        "--help")


def test_printing_the_config_ignores_where_a_run_would_write(tmp_path, monkeypatch, capsys):
    (tmp_path / "taken").write_text("a file")
    monkeypatch.chdir(tmp_path)
    assert train_main(["--cfg", "job", "hydra.run.dir=taken", "seed=7"]) == 0
    assert "seed: 7" in capsys.readouterr().out


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as torchvision stores MNIST: magic 2051 (images) or 2049 (labels), big-endian sizes, bytes."""
    magic = 2051 if array.ndim == 3 else 2049
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
                     + array.astype(np.uint8).tobytes())


def test_a_data_file_with_a_label_outside_the_classes_fails_the_run_in_one_line(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    for prefix, labels in (("train", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), ("t10k", [1, 2, 25])):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((len(labels), 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.array(labels))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:  # found while the run loads its data: Hydra's job exits
        train_main(["data=mnist", "data.root=data", "data.cache=false", "logger=none"])
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr == ("regbench train: error: data/MNIST/raw/t10k-labels-idx1-ubyte holds label 25 (at position 2); "
                      "allowed labels: 0..9; the file is corrupt or from another dataset: re-fetch it\n")
    metrics = json.loads(next((tmp_path / "outputs").rglob("metrics.json")).read_text())
    assert metrics["status"] == "failed" and "holds label 25" in metrics["error"]


@pytest.mark.parametrize("args,message", [
    (["data.augment=5"], "data.augment=5 is invalid: data.augment holds keys (crop_padding, hflip, "
                         "random_resized_crop); set them one by one, e.g. data.augment.crop_padding=VALUE"),
    (["regularizer=[cutmix]", "regularizer.cutmix=0.5"], "regularizer.cutmix=0.5 is invalid: regularizer.cutmix "
                                                         "holds keys (alpha, box, prob)"),
    (["backbone.widths=3"], "backbone.widths=3 is invalid: backbone.widths is a list (e.g. backbone.widths=[32, 64, "
                            "128]); write one in brackets"),
])
def test_a_mapping_or_list_replaced_by_a_single_value_is_refused(args, message, tmp_path, monkeypatch, capsys):
    assert refused(args, tmp_path, monkeypatch, capsys).startswith(message)


@pytest.mark.parametrize("args,message", [
    (["calibrate=[temperature,tempratur]"], "calibrate='tempratur' is not a known calibrate; allowed: h_calibration, "
                                            "temperature"),
    (["calibrate=[h_calibration]", "calibrate.h_calibration.window=7"], "calibrate.h_calibration.window=7 is "
                                                                        "invalid: must be an even integer > 0"),
    (["calibrate=[temperature]", "calibrate.temperature.max_iter=-3"], "calibrate.temperature.max_iter=-3 is "
                                                                       "invalid: must be an integer > 0"),
    (["calibrate=[h_calibration]", "data.val_fraction=0"], "calibrate=[h_calibration] fits on the validation split, "
                                                           "but data.val_fraction=0 leaves none"),
])
def test_bad_calibrators_are_refused_in_one_line(args, message, tmp_path, monkeypatch, capsys):
    assert refused(args, tmp_path, monkeypatch, capsys).startswith(message)
