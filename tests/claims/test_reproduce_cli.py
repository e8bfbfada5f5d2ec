"""`regbench reproduce` end to end on the tiny test card, and its one-line refusals (which import no torch)."""
import json
import subprocess
import sys

import pytest
from conftest import TINY_CARD, TINY_PROCEDURE_CARD

from regbench.claims import card as card_module
from regbench.claims.card import card_names
from regbench.claims.cli import main

TINY = ["logger=wandb", "seed=0,1"]  # two seed pairs; W&B offline (the tests' environment)
# Runs the CLI in a fresh interpreter and fails if it imported torch: --list and mistakes must answer at once.
NO_TORCH = ("import sys; from regbench.claims.cli import main; code = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")


def run_without_torch(args, cli_env, cwd):
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], cwd=cwd, env=cli_env, capture_output=True,
                          text=True, timeout=120)


def test_list_shows_every_card_without_importing_torch(cli_env, tmp_path):
    result = run_without_torch(["--list"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert listed == card_names() and len(listed) >= 1


@pytest.mark.parametrize(("args", "message"), [
    (["bogus"], "regbench reproduce: error: claim card 'bogus' is not known; allowed: "),
    (["nowhere.yaml"], "regbench reproduce: error: claim card file 'nowhere.yaml' does not exist"),
    ([str(TINY_CARD), "--scale", "huge"],
     "regbench reproduce: error: --scale 'huge' is invalid: allowed: quick, paper"),
    (["--all", "--scale", "huge"], "regbench reproduce: error: --scale 'huge' is invalid: allowed: quick, paper"),
    ([], "regbench reproduce: error: no card given: give NAME (one of "),
    (["--list", "x"], "regbench reproduce: error: --list takes no card, overrides or --all"),
    (["--scoreboard", "s.md", "x"], "regbench reproduce: error: --scoreboard only together with --all"),
    ([str(TINY_CARD), "--root", "/etc/passwd/x"],
     "regbench reproduce: error: --root='/etc/passwd/x' is invalid: it lies under '/etc/passwd', which is not a "),
    (["--all", "--scoreboard", "."], "regbench reproduce: error: --scoreboard='.' is invalid: it is a directory"),
    # The arm configs the check composes are written first, and removed with the folders made for them.
    ([str(TINY_CARD), "norm=bogus"], "regbench reproduce: error: norm='bogus' is not a known norm; allowed:"),
])
def test_mistakes_are_one_line_with_exit_code_2_and_no_torch(cli_env, tmp_path, args, message):
    result = run_without_torch(args, cli_env, tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(message), result.stderr
    assert not (tmp_path / "reproductions").exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["hydra.sweep.dir=elsewhere"], "'hydra.sweep.dir=elsewhere' cannot be overridden: regbench reproduce sets it"),
    (["norm=batchnorm,groupnorm"], "'norm=batchnorm,groupnorm' sweeps a setting: a card compares exactly two arms"),
    (["seed=3"], "seed=3 is invalid: give at least 2 distinct integer seeds >= 0"),
    (["norm=bogus"], "norm='bogus' is not a known norm; allowed:"),
])
@pytest.mark.slow
def test_bad_overrides_are_refused_before_any_job_starts(run_regbench, tmp_path, overrides, message):
    result = run_regbench("reproduce", str(TINY_CARD), *overrides)
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    assert not (tmp_path / "reproductions" / "tiny" / "quick" / "sweep.json").exists()


@pytest.mark.slow
def test_a_missing_dataset_is_one_line_before_any_job_starts(run_regbench, tmp_path):
    result = run_regbench("reproduce", str(TINY_CARD), "data=mnist", f"data.root={tmp_path / 'empty'}")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("regbench reproduce: error: MNIST files not found: ")
    assert result.stderr.count("\n") == 1 and f"data.root='{tmp_path / 'empty'}'" in result.stderr
    assert not (tmp_path / "reproductions" / "tiny" / "quick" / "sweep.json").exists()


@pytest.mark.slow
def test_reproduce_runs_the_card_as_a_sweep_judges_it_and_resumes(run_regbench, tmp_path, monkeypatch, capsys,
                                                                   offline_wandb_run):
    result = run_regbench("reproduce", str(TINY_CARD), *TINY, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "reproductions" / "tiny" / "quick"
    assert "regbench train -m seed=0,1 +arm=baseline,treatment exp_name=claim_tiny" in result.stdout
    index = json.loads((sweep_dir / "sweep.json").read_text())
    assert [(job["overrides"][:2], job["status"]) for job in index["jobs"]] == [
        (["seed=0", "+arm=baseline"], "completed"), (["seed=0", "+arm=treatment"], "completed"),
        (["seed=1", "+arm=baseline"], "completed"), (["seed=1", "+arm=treatment"], "completed")]
    claim = json.loads((sweep_dir / "claim.json").read_text())
    assert claim["verdict"] in ("reproduced", "contradicted", "not reproduced") and claim["seeds"] == [0, 1]
    assert claim["test"] == "paired t-test" and len(claim["arms"]["treatment"]["values"]) == 2
    assert claim["arms"]["treatment"]["overrides"] == ["regularizer=[label_smoothing]",
                                                      "regularizer.label_smoothing.eps=0.2"]
    assert "label_smoothing:\n    eps: 0.2" in (sweep_dir / "1" / "config.yaml").read_text()
    assert "regularizer: {}" in (sweep_dir / "0" / "config.yaml").read_text()
    markdown = (sweep_dir / "CLAIM.md").read_text()
    assert f"**Verdict: {claim['verdict']}.**" in markdown
    assert "| seed | baseline | treatment | difference |" in markdown
    assert (sweep_dir / "claim.png").read_bytes().startswith(b"\x89PNG")
    assert f"tiny (quick): {claim['verdict']} -- test_acc" in result.stdout

    # The W&B claim run sits in the group of the card's jobs, with the verdict, the table and the plot (read with
    # W&B's own reader).
    job_run, claim_run = offline_wandb_run(sweep_dir / "0" / "wandb"), offline_wandb_run(sweep_dir / "wandb")
    assert job_run.run["run_group"] == claim_run.run["run_group"] == "claim_tiny/quick"
    assert claim_run.run["job_type"] == "claim"
    summary = claim_run.summary
    assert summary["verdict"] == claim["verdict"] and summary["effect"] == pytest.approx(claim["effect"])
    per_seed = claim_run.table("claim/per_seed")
    assert per_seed["columns"] == ["seed", "baseline", "treatment", "difference"]
    assert [row[0] for row in per_seed["data"]] == claim["seeds"]
    assert [row[2] for row in per_seed["data"]] == pytest.approx(claim["arms"]["treatment"]["values"])
    assert summary["claim/plot"]["_type"] == "image-file"

    # --all over a cards folder holding only this card: the same sweep directory, so every job is skipped.
    monkeypatch.setattr(card_module, "cards_dir", lambda: TINY_CARD.parent)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the command line names it when set (test_scoreboard)
    assert main(["--all", *TINY, "--scoreboard", "BOARD.md"]) == 0
    out = capsys.readouterr().out
    index = json.loads((sweep_dir / "sweep.json").read_text())
    assert [job["outcome"] for job in index["jobs"]] == ["skipped"] * 4
    assert json.loads((sweep_dir / "claim.json").read_text())["effect"] == claim["effect"]
    board = (tmp_path / "BOARD.md").read_text()
    assert "- command: `regbench reproduce --all logger=wandb seed=0,1 --scoreboard BOARD.md`" in board
    assert f"| tiny | {claim['claim']} | test_acc | **{claim['verdict']}** |" in board
    assert "wrote BOARD.md: 1 of 1 cards judged" in out


@pytest.mark.slow
def test_a_relaunch_that_would_run_something_else_is_refused(run_regbench, tmp_path):
    sweep_dir = tmp_path / "reproductions" / "tiny" / "quick"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "reproduce.json").write_text(json.dumps({
        "card": "tiny", "scale": "quick", "seeds": [0, 1],
        "arms": {"baseline": ["regularizer=[none]", "exp_name=claim_tiny"], "treatment": ["regularizer=[mixup]"]}}))
    result = run_regbench("reproduce", str(TINY_CARD), "seed=0,1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "holds a reproduction whose baseline ran 'regularizer=[none] exp_name=claim_tiny', not" in result.stderr


@pytest.mark.slow
def test_a_procedure_card_runs_its_steps_per_seed_judges_and_a_relaunch_skips_them(run_regbench, tmp_path):
    result = run_regbench("reproduce", str(TINY_PROCEDURE_CARD), "seed=0,1", "logger=none", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "reproductions" / "tiny_procedure" / "quick"
    members = (sweep_dir / "seed_1" / "members").absolute()
    assert (f"seed 1, step probe: regbench probe {members} --max-iter 50 --out {members.parent / 'probe'}"
            in result.stdout)
    for seed in (0, 1):
        runs = json.loads((sweep_dir / f"seed_{seed}" / "members" / "sweep.json").read_text())["jobs"]
        assert [job["run_dir"] for job in runs] == [f"seed_1{seed}0", f"seed_1{seed}1"]
    probes = [json.loads((sweep_dir / f"seed_{seed}" / "probe" / "probe.json").read_text()) for seed in (0, 1)]
    assert [[run["seed"] for run in probe["runs"]] for probe in probes] == [[100, 101], [110, 111]]
    claim = json.loads((sweep_dir / "claim.json").read_text())
    assert claim["seeds"] == [0, 1] and claim["verdict"] in ("reproduced", "contradicted", "not reproduced")
    assert claim["arms"]["baseline"]["values"] == [probe["results"][0]["test_acc"] for probe in probes]
    assert claim["arms"]["treatment"]["values"] == [probe["results"][1]["test_acc"] for probe in probes]
    assert claim["arms"]["treatment"]["from"] == "results.1.test_acc of probe/probe.json"
    assert "- step `probe`, for each seed: `regbench probe {members} --max-iter 50`" in (
        sweep_dir / "CLAIM.md").read_text()
    assert f"tiny_procedure (quick): {claim['verdict']} -- test_acc" in result.stdout

    again = run_regbench("reproduce", str(TINY_PROCEDURE_CARD), "seed=0,1", "logger=none", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done, skipped") == 4 and "regbench train" not in again.stdout
    assert json.loads((sweep_dir / "claim.json").read_text())["effect"] == claim["effect"]
