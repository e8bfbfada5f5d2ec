"""The `regbench` command: each command is the `main(args) -> exit code` of its own package's cli module, imported
only when it runs (none of them imports torch before it needs to)."""
from __future__ import annotations

import importlib
import sys

USAGE = """usage: regbench <command> [args]

commands:
  train [overrides]   train one run, or a sweep with -m (Hydra overrides, e.g. norm=groupnorm seed=1)
  compare PATH...     compare run and sweep directories side by side (regbench compare --help)
  reproduce NAME      run a paper's claim card and judge it; --list shows the cards (regbench reproduce --help)
  score DIR           per-sample EL2N/GraNd scores over seeds, for data.prune.scores (regbench score --help)
  soup PATH...        average fine-tuned runs' weights into a model soup (regbench soup --help)
  probe PATH...       linear probes on the concatenated features of completed runs (regbench probe --help)
"""
COMMANDS = {"train": "regbench.run.cli", "compare": "regbench.compare.cli", "reproduce": "regbench.claims.cli",
            "score": "regbench.scoring.cli", "soup": "regbench.soups.cli", "probe": "regbench.probing.cli"}


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        sys.exit(0 if args else 2)
    command, rest = args[0], args[1:]
    if command in COMMANDS:
        sys.exit(importlib.import_module(COMMANDS[command]).main(rest))
    print(f"regbench: error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
    sys.exit(2)
