"""The scoreboard names the command, the machine, and each card's verdict or why it has none."""
import time
from pathlib import Path

from regbench.claims.scoreboard import Entry, machine, scoreboard_markdown


def test_a_card_without_a_verdict_says_why_and_the_header_says_how_it_was_made(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    text = scoreboard_markdown([Entry("elr", None, "MNIST files not found: x | y")], "quick",
                               ["--all", "--scale", "quick", "logger=none"], time.time(), 3.5, Path("reproductions"))
    assert text.startswith("# Reproductions of the papers' claims (scale `quick`)")
    assert "- command: `OMP_NUM_THREADS=1 regbench reproduce --all --scale quick logger=none`" in text
    assert f"- machine: {machine()}" in text and "load average when it started: 3.5" in text
    assert "| elr | | | no verdict: MNIST files not found: x \\| y | | | | | |" in text
    assert "CPUs (" in machine()
