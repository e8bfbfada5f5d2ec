"""`regbench compare` ranks runs by their subpopulation accuracies (higher is better) and `--plots` draws the
majority-vs-minority scatter of "Accuracy on the Curve" only for runs that have them."""
import json

from compare_rundirs import acc_metrics, write_run

from regbench.compare.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# (majority, minority) test accuracy of each seed's run, per regularizer.
POINTS = {"none": [(0.99, 0.20), (0.98, 0.25)], "mixup": [(0.95, 0.55), (0.96, 0.50)]}


def write_colored_runs(root):
    for name, points in POINTS.items():
        for seed, (majority, minority) in enumerate(points):
            metrics = {**acc_metrics(0.6), "test_majority_acc": majority, "test_minority_acc": minority,
                       "test_worst_group_acc": minority - 0.05, "best_test_majority_acc": majority,
                       "best_test_minority_acc": minority, "best_test_worst_group_acc": minority - 0.05}
            write_run(root / f"{name}{seed}", seed=seed, metrics=metrics,
                      regularizer={"mixup": {"alpha": 0.2}} if name == "mixup" else None)


def test_compare_ranks_by_minority_accuracy_higher_first(tmp_path, capsys):
    write_colored_runs(tmp_path / "runs")
    assert main([str(tmp_path / "runs"), "--metric", "test_minority_acc", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [g["settings"]["regularizer"] for g in document["groups"]] == ["mixup", "none"]
    assert document["groups"][0]["mean"] == sum(m for _, m in POINTS["mixup"]) / 2
    assert main([str(tmp_path / "runs"), "--metric", "best_test_worst_group_acc", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"][0]["settings"]["regularizer"] == "mixup"


def test_subpopulation_scatter_is_drawn_for_runs_with_group_accuracies(tmp_path, capsys):
    write_colored_runs(tmp_path / "runs")
    plots = tmp_path / "plots"
    assert main([str(tmp_path / "runs"), "--plots", str(plots)]) == 0
    data = (plots / "subpopulations.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    assert str(plots / "subpopulations.png") in capsys.readouterr().err


def test_no_subpopulation_scatter_without_group_accuracies(tmp_path, capsys):
    write_run(tmp_path / "runs" / "plain", seed=0, metrics=acc_metrics(0.9))
    assert main([str(tmp_path / "runs"), "--plots", str(tmp_path / "plots")]) == 0
    assert not (tmp_path / "plots" / "subpopulations.png").exists()
