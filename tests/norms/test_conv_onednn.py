"""regbench's convs route around torch 2.14.1's one-thread oneDNN heap corruption (1x1 stride-2 convs with 2-7 input
channels in channels_last): the same results as nn.Conv2d, and the shapes that abort a process train."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from regbench.norms.conv import Conv2d, WSConv2d

# 20 weight-gradient passes of the conv the bug hits, on one thread: nn.Conv2d aborts here on an AVX2 CPU.
ONE_THREAD_BACKWARD = """
import sys, torch
from regbench.norms.conv import Conv2d
torch.set_num_threads(1)
conv = Conv2d(4, 8, kernel_size=1, stride=2, bias=False)
x = torch.randn(2, 4, 16, 16).contiguous(memory_format=torch.channels_last)
for _ in range(20):
    conv(x).sum().backward()
print("survived")
"""
NARROW_RESNET = """
import torch
from regbench.backbones import build_backbone
torch.set_num_threads(1)
for norm in ("powernorm", "batchnorm"):
    # powernorm outside a run: an absolute warm-up, not the config's fraction of the run
    model = build_backbone({"name": "preact_resnet18", "width": 4},
                           {"name": norm, **({"warmup_iters": 4000} if norm == "powernorm" else {})}, (1, 16, 16), 3)
    model = model.to(memory_format=torch.channels_last)
    for _ in range(3):
        model(torch.randn(2, 1, 16, 16).contiguous(memory_format=torch.channels_last)).sum().backward()
print("survived")
"""


def run_one_thread(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("conv_class", [Conv2d, WSConv2d])
@pytest.mark.parametrize("in_channels,stride", [(4, 2), (3, (2, 1)), (16, 2), (4, 1)])
def test_results_equal_nn_conv2d_in_channels_last(conv_class, in_channels, stride):
    torch.manual_seed(0)
    ours = conv_class(in_channels, 8, kernel_size=1, stride=stride)
    reference = nn.Conv2d(in_channels, 8, kernel_size=1, stride=stride)
    weight = ours.standardized_weight() if conv_class is WSConv2d else ours.weight
    with torch.no_grad():
        reference.weight.copy_(weight)
        reference.bias.copy_(ours.bias)
    x = torch.randn(2, in_channels, 8, 8).contiguous(memory_format=torch.channels_last)
    # The reference in the default layout: in channels_last it is the call that aborts on one thread.
    x_ours, x_ref = x.clone().requires_grad_(), x.contiguous().requires_grad_()
    out_ours, out_ref = ours(x_ours), reference(x_ref)
    torch.testing.assert_close(out_ours, out_ref)
    out_ours.square().sum().backward()
    out_ref.square().sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    if conv_class is Conv2d:
        torch.testing.assert_close(ours.weight.grad, reference.weight.grad)


def test_the_conv_the_bug_hits_trains_on_one_thread():
    done = run_one_thread(ONE_THREAD_BACKWARD)
    assert done.returncode == 0 and "survived" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow
def test_a_narrow_channels_last_resnet_trains_on_one_thread():
    done = run_one_thread(NARROW_RESNET)
    assert done.returncode == 0 and "survived" in done.stdout, done.stderr[-2000:]
