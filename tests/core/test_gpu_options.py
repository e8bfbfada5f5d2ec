"""trainer.channels_last, trainer.compile and trainer.precision=bf16-mixed, checked on CPU: validated like the other
trainer keys, channels_last weights and batches giving the plain run's results, a compiled network training end to
end, bf16 autocast around the network only; and scripts/bench_gpu.py, which measures them on a GPU, run on a CPU."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from regbench.backbones import build_backbone
from regbench.run.cli import main as train_main
from regbench.regularizers import create_regularizer
from regbench.run.module import ClassifierModule

BENCH_GPU = Path(__file__).resolve().parents[2] / "scripts" / "bench_gpu.py"


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


def test_bf16_mixed_runs_the_network_under_bf16_autocast_and_keeps_the_loss_and_weights_float32():
    module = conv_module()
    outputs, losses = [], []
    module.model.register_forward_hook(lambda layer, args, output: outputs.append(output.dtype))
    training_loss = module.training_loss
    module.training_loss = lambda batch, index: losses.append(training_loss(batch, index)) or losses[-1]
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    module.configure_optimizers = lambda: ([optimizer], [{"scheduler": schedule, "interval": "step"}])
    data = TensorDataset(torch.randn(12, 3, 8, 8), torch.arange(12) % 3, torch.arange(12))
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=6))
    assert trainer.global_step == 2 and outputs == [torch.bfloat16] * 2
    assert [loss.dtype for loss in losses] == [torch.float32] * 2
    assert {parameter.dtype for parameter in module.parameters()} == {torch.float32}


@pytest.mark.slow
def test_the_gpu_benchmark_runs_its_code_on_a_cpu_and_says_in_one_line_that_it_needs_a_gpu(tmp_path, cli_env):
    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(BENCH_GPU), *args], cwd=tmp_path, env=cli_env, capture_output=True,
                              text=True, timeout=600)

    if not torch.cuda.is_available():
        note = bench()
        assert (note.returncode, note.stdout, note.stderr) == (0, "bench_gpu: no CUDA device; nothing measured\n", "")
    done = bench("--device", "cpu", "--num-samples", "100", "--batch-size", "16")
    assert done.returncode == 0, done.stderr[-2000:]
    header, eager = done.stdout.splitlines()
    assert header.startswith("CPU, torch ") and "batch 16, bf16-mixed, channels_last" in header
    assert re.fullmatch(r"eager: regbench [\d.]+ s/epoch \([\d.]+ ms/step\), raw PyTorch [\d.]+ s/epoch "
                        r"\([\d.]+ ms/step\), ratio [\d.]+; invocation to first step [\d.]+ s", eager), eager
