"""The package's rooms import each other in one direction only: the technique families never import the run
machinery, readers of run directories never import what trains, and no module imports one that imports it back.
Modules that train nothing stay free of torch, so commands that only read or check stay fast."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "regbench"
FAMILIES = ("regbench.data", "regbench.norms", "regbench.backbones", "regbench.regularizers", "regbench.optim",
            "regbench.loggers")
MACHINERY = ("regbench.run", "regbench.sweeps", "regbench.config", "regbench.compare", "regbench.cli")
# What the readers of run directories may import from regbench.
READER_ALLOWED = ("regbench.compare", "regbench.command", "regbench.errors", "regbench.rundir_format")
# Modules that import neither torch nor Lightning nor W&B nor timm when loaded. (submitit loads regbench.sweeps.slurm,
# its executor plugin, in every process that looks up its executors.) The registries' declarations and the config
# checks that read them are among them, so a config mistake or a printed config never loads torch.
TORCH_FREE = ("regbench.cli", "regbench.run.cli", "regbench.rundir_format", "regbench.sweepdir_format",
              "regbench.scores_file", "regbench.errors", "regbench.runshape", "regbench.sweeps.index",
              "regbench.sweeps.launchers", "regbench.sweeps.slurm", "regbench.config.trainer",
              "regbench.compare.cli", "regbench.compare.wandb_report", "regbench.sweeps.summary", "regbench.loggers",
              "regbench.claims.cli", "regbench.claims.card", "regbench.registry", "regbench.specs.data",
              "regbench.specs.backbones", "regbench.specs.norms", "regbench.specs.optim", "regbench.specs.regularizers",
              "regbench.specs.data_values", "regbench.specs.label_shift", "regbench.specs.calibration",
              "regbench.specs.values", "regbench.config.validate", "regbench.config.keys", "regbench.sweeps.preflight",
              "regbench.run.plan", "regbench.sweeps.child", "regbench.command")
HEAVY = ("torch", "lightning", "wandb", "timm")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """regbench modules imported when `path` is loaded (imports inside functions are deferred on purpose)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("regbench"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("regbench")}
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
# A package's __init__ importing its own submodules (`from regbench.norms import batch`) is no import of itself.
IMPORTS = {name: {m for m in top_level_imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def within(name: str, rooms: tuple[str, ...]) -> bool:
    return any(name == room or name.startswith(f"{room}.") for room in rooms)


def test_families_never_import_the_machinery():
    wrong = {(module, imported) for module, imports in IMPORTS.items() if within(module, FAMILIES)
             for imported in imports if within(imported, MACHINERY)}
    assert not wrong


def test_claims_train_nothing_themselves():
    """A card runs as an ordinary sweep through the CLI; the claims code only plans, reads and judges."""
    wrong = {(module, imported) for module, imports in IMPORTS.items() if within(module, ("regbench.claims",))
             for imported in imports if within(imported, ("regbench.run",) + FAMILIES[:-1])}
    assert not wrong


def test_readers_of_run_directories_import_only_the_format():
    wrong = {(module, imported) for module, imports in IMPORTS.items() if within(module, ("regbench.compare",))
             for imported in imports if not within(imported, READER_ALLOWED) and imported != "regbench"}
    assert not wrong


def test_no_module_imports_one_that_imports_it_back():
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in IMPORTS.get(start, ()):
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    cycles = sorted(name for name in IMPORTS if reaches(name, name, set()))
    assert not cycles


def room(module: str) -> str:
    """A module's room: its subpackage (regbench.data), or itself for the shared modules at the top; each command's
    entry (`cli` modules, the dispatcher) sits above every room, where it may import any of them."""
    parts = module.split(".")
    return "commands" if parts[-1] == "cli" else ".".join(parts[:2])


def test_the_rooms_import_each_other_in_one_direction():
    """No room reaches itself through the others' top-level imports: the rooms stack in layers (the shared formats,
    specs, families, config and the single run, sweeps, command families), each importing only those below."""
    graph: dict[str, set[str]] = {}
    for module, imports in IMPORTS.items():
        graph.setdefault(room(module), set()).update(room(m) for m in imports if room(m) != room(module))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    assert sorted(name for name in graph if reaches(name, name, set())) == []


def test_the_specs_import_no_family_module():
    """The declarations are read by the torch-free checks; the families' modules fulfil them, never the reverse."""
    wrong = {(module, imported) for module, imports in IMPORTS.items() if within(module, ("regbench.specs",))
             for imported in imports if within(imported, FAMILIES[:-1] + MACHINERY)}
    assert not wrong


def test_the_streaming_path_is_loaded_only_for_a_streamed_dataset():
    """In-memory runs (every built-in dataset, folders that fit) never load the DataLoader worker machinery."""
    assert not {module for module, imports in IMPORTS.items() if "regbench.data.stream" in imports}


@pytest.mark.parametrize("module", TORCH_FREE)
def test_modules_that_train_nothing_load_without_torch(module):
    probe = (f"import sys, {module}; heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
             f"print(','.join(heavy))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_run_and_sweep_directory_names_and_statuses_are_spelled_in_their_format_modules_only():
    """The run directory's file names and metrics.json's statuses live in regbench.rundir_format, sweep.json's name in
    regbench.sweepdir_format: a writer or reader spelling one itself could drift from the format."""
    from regbench.rundir_format import (CHECKPOINT_DIR, CONFIG_FILE, HISTORY_FILE, LAST_CHECKPOINT, METRICS_FILE,
                                        STATUSES)
    from regbench.sweepdir_format import INDEX_NAME

    names = {CHECKPOINT_DIR, CONFIG_FILE, HISTORY_FILE, LAST_CHECKPOINT, METRICS_FILE, INDEX_NAME}
    owners = {"regbench.rundir_format", "regbench.sweepdir_format"}
    spelled = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names and module not in owners:
                spelled.add((module, node.lineno, node.value))
            status = (node.value if isinstance(node, ast.keyword) and node.arg == "status" else
                      next((value for key, value in zip(node.keys, node.values)
                            if isinstance(key, ast.Constant) and key.value == "status"), None)
                      if isinstance(node, ast.Dict) else None)
            if isinstance(status, ast.Constant) and status.value in STATUSES and module != "regbench.rundir_format":
                spelled.add((module, node.lineno, status.value))
    assert spelled == set()
