"""skip_failing_nvml_check: Lightning's NVML-first GPU check is dropped only where torch cannot load NVML, and torch's
answers stay the same without it."""
from __future__ import annotations

import ctypes
import os

import pytest
import torch

from regbench.devices import NVML_CHECK, NVML_LIBRARY, skip_failing_nvml_check


def cuda_answers() -> tuple[bool, int]:
    return torch.cuda.is_available(), torch.cuda.device_count()


def nvml_loads() -> bool:
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return False
    return True


@pytest.fixture
def lightning_setting(monkeypatch):
    monkeypatch.setenv(NVML_CHECK, "1")  # as `import lightning` leaves it


def failing_load(name):
    raise OSError(f"{name}: cannot open shared object file")


def test_the_setting_is_dropped_where_nvml_cannot_load(monkeypatch, lightning_setting):
    monkeypatch.setattr(ctypes, "CDLL", failing_load)
    skip_failing_nvml_check()
    assert NVML_CHECK not in os.environ


@pytest.mark.parametrize("hip", [None, "6.2"])
def test_the_setting_stays_where_nvml_loads_or_torch_is_built_for_rocm(monkeypatch, lightning_setting, hip):
    monkeypatch.setattr(torch.version, "hip", hip)
    if hip is None:
        monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    else:  # ROCm asks AMD's library, whatever becomes of NVML
        monkeypatch.setattr(ctypes, "CDLL", failing_load)
    skip_failing_nvml_check()
    assert os.environ[NVML_CHECK] == "1"


def test_an_unset_or_other_setting_is_left_as_it_is(monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", failing_load)
    monkeypatch.delenv(NVML_CHECK, raising=False)
    skip_failing_nvml_check()
    assert NVML_CHECK not in os.environ
    monkeypatch.setenv(NVML_CHECK, "0")
    skip_failing_nvml_check()
    assert os.environ[NVML_CHECK] == "0"


@pytest.mark.skipif(nvml_loads(), reason="NVML loads on this machine: the setting is kept")
def test_torch_answers_the_same_without_the_setting_where_nvml_cannot_load(monkeypatch, lightning_setting):
    with_nvml_first = cuda_answers()
    skip_failing_nvml_check()
    assert NVML_CHECK not in os.environ
    assert cuda_answers() == with_nvml_first
