import csv
import io
import json

import numpy as np
import pytest
from compare_rundirs import acc_metrics, write_run
from scipy import stats as scipy_stats

from regbench.compare.cli import main
from regbench.compare.stats import holm

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_names_groups_statistics_and_test(sweep, capsys):
    code, out, err = run([str(sweep["dir"])], capsys)
    assert code == 0
    for text in ("test_acc", "cutmix", "mixup", "none", "baseline", "paired t-test", "95% CI"):
        assert text in out
    assert out.index("cutmix") < out.index("mixup") < out.index("│ none")  # ranked best first
    assert "12 completed runs" in err


def test_json_output(sweep, capsys):
    code, out, _ = run([str(sweep["dir"]), "--format", "json"], capsys)
    document = json.loads(out)
    values = sweep["values"]
    assert code == 0 and document["metric"] == "test_acc" and document["group_keys"] == ["regularizer"]
    assert [g["settings"]["regularizer"] for g in document["groups"]] == ["cutmix", "mixup", "none"]
    cutmix = document["groups"][0]
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(values["cutmix"]), scale=scipy_stats.sem(values["cutmix"]))
    assert cutmix["ci95"] == pytest.approx([low, high])
    assert cutmix["vs_baseline"]["p_value"] == pytest.approx(
        scipy_stats.ttest_rel(values["cutmix"], values["none"]).pvalue)
    assert cutmix["vs_baseline"]["test"] == "paired t-test"
    assert document["groups"][2]["vs_baseline"] is None
    # Holm over the two tests (cutmix and mixup against none): the smaller p doubled, the larger kept or raised
    raw = [g["vs_baseline"]["p_value"] for g in document["groups"][:2]]
    assert [g["vs_baseline"]["p_holm"] for g in document["groups"][:2]] == pytest.approx(holm(raw))
    assert document["holm_family_size"] == 2


def test_csv_output(sweep, capsys):
    code, out, _ = run([str(sweep["dir"]), "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [row["regularizer"] for row in rows] == ["cutmix", "mixup", "none"]
    assert float(rows[1]["mean"]) == pytest.approx(np.mean(sweep["values"]["mixup"]))
    assert rows[0]["seeds"] == "0 1 2 3"
    assert float(rows[0]["p_value"]) == pytest.approx(
        scipy_stats.ttest_rel(sweep["values"]["cutmix"], sweep["values"]["none"]).pvalue)
    assert rows[2]["diff"] == "" and rows[2]["p_holm"] == ""  # the baseline row
    assert float(rows[0]["p_holm"]) == pytest.approx(holm([float(rows[0]["p_value"]), float(rows[1]["p_value"])])[0])


def test_markdown_output(sweep, capsys):
    code, out, _ = run([str(sweep["dir"]), "--format", "markdown", "--metric", "test_nll"], capsys)
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert code == 0
    assert table[0].startswith("| rank | regularizer | n | mean |") and "Δ vs baseline" in table[0]
    assert "| p | p_holm | test |" in table[0]
    assert "p: the raw p-value of each test; p_holm: Holm-adjusted over the 2 tests of this table" in out
    assert set(table[1].replace("|", "").split()) == {"---"}
    assert len(table) == 2 + 3 and all(line.count("|") == table[0].count("|") for line in table)


def test_single_group_has_no_comparison_columns(tmp_path, capsys):
    write_run(tmp_path / "a", seed=0, metrics=acc_metrics(0.9))
    write_run(tmp_path / "b", seed=1, metrics=acc_metrics(0.8))
    code, out, _ = run([str(tmp_path), "--format", "csv"], capsys)
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and row["group"] == "all runs" and row["n"] == "2"
    assert "diff" not in row and "p_value" not in row


def test_single_run_group_shows_no_interval(tmp_path, capsys):
    write_run(tmp_path / "a", seed=0, metrics=acc_metrics(0.9))
    code, out, _ = run([str(tmp_path)], capsys)
    assert code == 0 and "n/a (n=1)" in out and "nan" not in out.lower()
    code, out, _ = run([str(tmp_path), "--format", "json"], capsys)
    assert json.loads(out)["groups"][0]["ci95"] is None


def test_by_groups_on_the_given_keys(sweep, capsys):
    code, out, _ = run([str(sweep["dir"]), "--by", "norm", "--format", "json"], capsys)
    document = json.loads(out)
    assert code == 0 and document["group_keys"] == ["norm"]
    assert [(g["label"], g["n"]) for g in document["groups"]] == [("norm=batchnorm", 12)]
    assert document["baseline"] is None


def test_malformed_and_unfinished_runs_are_reported_and_skipped(sweep, capsys):
    bad = sweep["dir"] / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("{not json")
    write_run(sweep["dir"] / "crashed", seed=7, metrics={}, status="failed")
    code, out, err = run([str(sweep["dir"]), "--format", "json"], capsys)
    assert code == 0
    assert sum(g["n"] for g in json.loads(out)["groups"]) == 12
    assert f"warning: skipped malformed run {bad.resolve()}" in err
    assert "ignored 1 not completed (failed: 1)" in err and "skipped 1 malformed" in err


def test_plots_are_written_as_png(tmp_path, capsys):
    for seed in range(3):
        write_run(tmp_path / "runs" / f"none{seed}", seed=seed, metrics=acc_metrics(0.90 + seed / 100), noisy=True)
        write_run(tmp_path / "runs" / f"elr{seed}", seed=seed, metrics=acc_metrics(0.93 + seed / 100),
                  regularizer={"elr": {"lam": 3.0}}, noisy=True, epochs=4 + seed)  # curves of unequal length
    write_run(tmp_path / "runs" / "single", seed=0, metrics=acc_metrics(0.5), regularizer={"dropout": {}})
    plots = tmp_path / "plots"
    code, _, err = run([str(tmp_path / "runs"), "--plots", str(plots)], capsys)
    assert code == 0
    names = ["test_acc_bars.png", "learning_curves.png", "reliability.png", "memorization.png"]
    assert sorted(p.name for p in plots.iterdir()) == sorted(names)
    for name in names:
        data = (plots / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    assert str(plots / "memorization.png") in err


def test_memorization_plot_only_for_noisy_label_runs(sweep, tmp_path, capsys):
    code, _, _ = run([str(sweep["dir"]), "--plots", str(tmp_path / "plots")], capsys)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "learning_curves.png", "reliability.png", "test_acc_bars.png"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--metric", "test_accuracy"], "'test_accuracy' is not a metric of the runs; available: best_epoch"),
    (["--format", "latex"], "--format='latex' is invalid: one of table, markdown, csv, json"),
    (["--baseline", "regularizer=dropout"], "'regularizer=dropout' matches no group; groups: regularizer=none"),
    (["--baseline", "dropout"], "expected KEY=VALUE"),
    (["--by", "colour"], "'colour' is not a setting of the runs; available:"),
    (["--group", "g1"], "--group='g1' is invalid: only together with --wandb"),
    (["--colour"], "unrecognized arguments: --colour"),
    (["--plots", __file__], "is invalid: a directory, not a file"),
])
def test_user_errors_exit_2_with_one_line(sweep, capsys, argv, message):
    code, out, err = run([str(sweep["dir"]), *argv], capsys)
    assert code == 2 and out == ""
    error_lines = [line for line in err.splitlines() if "error" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith("regbench compare: error: ")
    assert message in error_lines[0] and "Traceback" not in err


def test_missing_path_exits_2(tmp_path, capsys):
    code, _, err = run([str(tmp_path / "nowhere")], capsys)
    assert code == 2 and err.strip() == f"regbench compare: error: path '{tmp_path / 'nowhere'}' does not exist: " \
                                        "give run or sweep directories"


def test_no_completed_runs_exits_2(tmp_path, capsys):
    write_run(tmp_path / "a", seed=0, metrics={}, status="interrupted")
    code, _, err = run([str(tmp_path)], capsys)
    assert code == 2 and "error: no completed runs found" in err and "interrupted: 1" in err


def test_no_paths_at_all_exits_2(capsys):
    code, _, err = run([], capsys)
    assert code == 2 and "error: no PATH given" in err


def test_help_exits_0(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "regbench compare" in out and "--baseline" in out


def test_reliability_plot_pools_only_runs_binned_alike(tmp_path, capsys):
    # runs written before and after the bins gained their confidence-1.0 bin can sit in the same group
    write_run(tmp_path / "old", seed=0, metrics=acc_metrics(0.9))
    new = write_run(tmp_path / "new", seed=1, metrics=acc_metrics(0.9))
    summary = json.loads((new / "metrics.json").read_text())
    calibration = summary["calibration"]
    calibration["bin_edges"].append(1.0)
    for key, value in (("bin_acc", 0.5), ("bin_conf", 1.0), ("bin_count", 7)):
        calibration[key].append(value)
    (new / "metrics.json").write_text(json.dumps(summary))
    code, _, err = run([str(tmp_path), "--plots", str(tmp_path / "plots")], capsys)
    assert code == 0, err
    assert (tmp_path / "plots" / "reliability.png").read_bytes().startswith(PNG_SIGNATURE)
