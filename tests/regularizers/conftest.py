"""Fixtures shared by the regularizers' end-to-end tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def train(run_regbench):
    """`regbench train ARGS` in tmp_path, warm, with room for a one-epoch sweep of presets."""
    return lambda *args: run_regbench("train", *args, timeout=600)
