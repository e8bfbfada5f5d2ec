"""data.crafted_val's bad settings end in one line naming the key, the value and what is allowed, exit 2, before any
run directory exists; a shift type that would both craft validation and augment training is refused."""
from __future__ import annotations

from pathlib import Path

import pytest

from regbench.run.cli import main as train_main
from regbench.errors import UserError
from regbench.sweeps.preflight import preflight

FOUR = "data.crafted_val.shifts=[gaussian_noise,contrast,gaussian_blur,pixelate]"


@pytest.mark.parametrize("overrides, expected", [
    (["data.crafted_val.shifts=[gaussian_noise,contrast,gaussian_noise]", "data.crafted_val.folds=2"],
     "data.crafted_val.shifts=['gaussian_noise', 'contrast', 'gaussian_noise'] is invalid: lists gaussian_noise more "
     "than once: a type that crafts one fold's validation set must never augment training; list each type once"),
    (["data.crafted_val.shifts=[fog]"], "data.crafted_val.shifts=['fog'] is invalid: must be a list of shift types "
                                        "from gaussian_noise, shot_noise"),
    (["data.crafted_val.shifts=contrast"], "data.crafted_val.shifts=contrast is invalid: data.crafted_val.shifts is a "
                                           "list (e.g. data.crafted_val.shifts=[]); write one in brackets"),
    ([FOUR, "data.crafted_val.folds=5"],
     "data.crafted_val.folds=5 is invalid: must be an integer from 1 to the 4 listed shift types"),
    ([FOUR, "data.crafted_val.folds=0"], "data.crafted_val.folds=0 is invalid"),
    ([FOUR, "data.crafted_val.folds=2", "data.crafted_val.fold=2"],
     "data.crafted_val.fold=2 is invalid: must be an integer in [0, crafted_val.folds=2)"),
    ([FOUR, "data.crafted_val.fold=-1"], "data.crafted_val.fold=-1 is invalid"),
    ([FOUR, "data.crafted_val.severity=6"], "data.crafted_val.severity=6 is invalid: must be an integer from 1 to 5"),
    (["data=modular", "data.crafted_val.shifts=[contrast]"],
     "data.crafted_val.shifts=['contrast'] is invalid: shifts images held in memory, but data=modular is not one"),
    (["data.crafted_val.shifts=[contrast,saturate]"],
     "data.crafted_val.shifts=['contrast', 'saturate'] is invalid: saturate needs colour (3-channel) images, but "
     "data=digits has 1 channel(s)"),
    (["data.crafted_val.shifts=[contrast]", "data.val_fraction=0"],
     "data.crafted_val.shifts=['contrast'] shifts the validation split, but data.val_fraction=0 leaves none"),
    (["optimized_metric=crafted_best_val_crafted_acc"],
     "optimized_metric='crafted_best_val_crafted_acc' is invalid: is reported only with crafted-shift validation"),
])
def test_bad_crafted_validation_settings_are_one_line_errors(overrides, expected):
    with pytest.raises(UserError) as err:
        preflight(overrides, multirun=False)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_a_validation_shift_that_also_trains_is_refused_with_exit_2_before_any_run_directory(tmp_path: Path,
                                                                                           monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train_main(["data.crafted_val.shifts=[contrast,pixelate,contrast]", "data.crafted_val.folds=2",
                       "logger=none"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "lists contrast more than once" in stderr, stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dataset", ["digits", "colored_digits", "synthetic"])
def test_crafted_validation_passes_preflight_on_in_memory_datasets(dataset):
    preflight([f"data={dataset}", FOUR, "data.crafted_val.folds=2", "data.crafted_val.fold=1",
               "optimized_metric=crafted_best_val_crafted_acc"], multirun=False)
