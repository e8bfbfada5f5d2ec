"""Every part-A preset trains one epoch on digits end to end; stacks run; nonsense stacks exit 2 in one line."""
import pytest
from run_dirs import completed_metrics

CONVNET_PRESETS = ["mixup_cutmix", "cutout", "rankmixup", "rankmixup_mndcg", "alpha_dropout",
                   "multisample_dropout", "nested_dropout"]
FAST = ["trainer.max_epochs=1", "logger=none"]


@pytest.mark.slow
def test_convnet_presets_train_one_epoch(train, tmp_path):
    sweep = tmp_path / "sweep"
    done = train("-m", f"+exp={','.join(CONVNET_PRESETS)}", *FAST, "backbone.widths=[8,16]",
                 f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-2000:]
    for job, preset in enumerate(CONVNET_PRESETS):
        payload = completed_metrics(sweep / str(job))
        assert payload["exp_name"] == preset
        assert payload["components"]["regularizer"] == "rankmixup" if preset.startswith("rankmixup") else preset
    by_k = completed_metrics(sweep / str(CONVNET_PRESETS.index("nested_dropout")))["nested_dropout_acc_by_k"]
    assert list(by_k) == ["1", "2", "4", "8", "16"] and all(0.0 <= acc <= 1.0 for acc in by_k.values())


@pytest.mark.slow
def test_droppath_preset_trains_resnet18(train, tmp_path):
    done = train("+exp=droppath", *FAST, "backbone.width=4", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert completed_metrics(tmp_path / "run")["components"]["backbone"] == "resnet18"


@pytest.mark.slow
def test_stack_of_mixing_erasing_smoothing_and_multisample_heads_trains(train, tmp_path):
    done = train("regularizer=[rankmixup,cutout,label_smoothing,multisample_dropout]", "regularizer.cutout.length=4",
                 *FAST, "backbone.widths=[8,16]", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    completed_metrics(tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("stack,message", [
    ("[cutmix,cutout]", "cutmix and cutout both do regional dropout"),
    ("[droppath]", "regularizer=droppath needs a backbone with residual blocks (e.g. backbone=resnet18); "
                   "ConvNet has none"),
])
def test_refusals_are_one_line_with_exit_2(train, tmp_path, stack, message):
    done = train(f"regularizer={stack}", *FAST, f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
