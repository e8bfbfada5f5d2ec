"""On a terminal `regbench train` shows a progress bar with loss, accuracy and ETA instead of plain lines."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_a_terminal_gets_a_progress_bar_with_loss_accuracy_and_eta(tmp_path, cli_env):
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "regbench", "train", "logger=none", "trainer.max_epochs=2",
                                "backbone.widths=[8,16]"], cwd=tmp_path, env={**cli_env, "COLUMNS": "200"},
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=300) == 0
    screen = b"".join(chunks).decode(errors="replace")
    for shown in ("train_loss_step", "train_acc_step", "val_acc", "Epoch 1/1"):
        assert shown in screen, screen[-2000:]
    assert "<00:00" in screen or "0:00:00" in screen  # the time remaining
    assert "ETA" not in screen  # the plain progress lines are for non-terminals only
