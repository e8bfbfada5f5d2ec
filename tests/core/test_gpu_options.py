"""trainer.channels_last and trainer.compile, checked on CPU: validated like the other trainer keys, channels_last
weights and batches giving the plain run's results, a compiled network training end to end."""
from __future__ import annotations

import pytest
import torch
import yaml

from regbench.backbones import build_backbone
from regbench.run.cli import main as train_main
from regbench.regularizers import create_regularizer
from regbench.run.module import ClassifierModule


@pytest.mark.parametrize("key", ["channels_last", "compile"])
def test_the_switches_take_booleans_only(key, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train_main([f"trainer.{key}=yes", "logger=none"]) == 2
    assert capsys.readouterr().err == f"regbench train: error: trainer.{key}='yes' is invalid: must be true or false\n"
    assert not list(tmp_path.iterdir())


def conv_module(**options) -> ClassifierModule:
    torch.manual_seed(0)
    model = build_backbone({"name": "convnet", "widths": [4, 8]}, {"name": "batchnorm"}, (3, 8, 8), 3)
    return ClassifierModule(model, [create_regularizer("cutout", length=2, n_holes=1)], 3, {"name": "sgd", "lr": 0.1},
                            {"name": "constant"}, **options)


@pytest.mark.filterwarnings("ignore:.*self.log.*")
def test_channels_last_weights_and_batches_give_the_plain_results():
    plain, nhwc = conv_module(), conv_module(channels_last=True)
    convs = [p for p in nhwc.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)
    captured = []
    nhwc.model.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    images, labels = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    losses = []
    for module in (plain, nhwc):
        torch.manual_seed(1)  # the same Cutout holes
        losses.append(module.training_loss((images, labels, torch.arange(6)), 0))
        losses[-1].backward()
    assert captured[0].is_contiguous(memory_format=torch.channels_last) and not captured[0].is_contiguous()
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(plain.model.parameters(), nhwc.model.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)
    plain.eval(), nhwc.eval()
    torch.testing.assert_close(nhwc(images), plain(images), rtol=1e-5, atol=1e-5)


def test_compile_compiles_the_network_in_place_keeping_its_state_dict_keys():
    plain, compiled = conv_module(), conv_module(compile_model=True)
    assert compiled.model._compiled_call_impl is not None and plain.model._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())


@pytest.mark.slow
def test_a_compiled_channels_last_run_trains_end_to_end_and_records_the_switches(run_regbench, tmp_path):
    result = run_regbench("train", "logger=none", "trainer.max_epochs=1", "backbone.widths=[8]",
                          "trainer.compile=true", "trainer.channels_last=true", "hydra.run.dir=run", timeout=900)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["trainer"]["compile"] is True and config["trainer"]["channels_last"] is True
    assert (tmp_path / "run" / "history.csv").read_text().count("\n") == 2
