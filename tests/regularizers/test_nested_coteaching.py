"""Nested Co-teaching (Chen et al., 2022): nested dropout stacked with co-teaching, in either list order, gives
two networks each with its own nested dropout layer drawing its own k, and the width report of the network that
evaluation runs."""
import json

import pytest
import torch

from regbench.backbones import build_backbone
from regbench.regularizers import build_regularizers
from regbench.regularizers.nested_dropout import NestedDropoutLayer
from regbench.run.module import ClassifierModule

STACK = {"nested_dropout": {"mu": 0.0, "sigma": 6.0},
         "coteaching": {"forget_rate": 0.2, "num_gradual": 2, "schedule": "paper"}}


def nested_pair(order: list[str]):
    torch.manual_seed(0)
    regularizers = build_regularizers({name: STACK[name] for name in order}, seed=0)
    backbone = build_backbone({"name": "mlp", "hidden": [16]}, {"name": "none"}, (1, 4, 4), 3)
    module = ClassifierModule(backbone, regularizers, 3, {"name": "sgd"}, {"name": "constant"})
    return module, next(reg for reg in regularizers if reg.name == "nested_dropout")


@pytest.mark.parametrize("order", [["nested_dropout", "coteaching"], ["coteaching", "nested_dropout"]])
def test_each_network_has_its_own_nested_dropout_layer_drawing_its_own_k(order):
    module, _ = nested_pair(order)
    layers = [[m for m in net.modules() if isinstance(m, NestedDropoutLayer)] for net in module.model.nets]
    assert [len(found) for found in layers] == [1, 1]
    first, second = layers[0][0], layers[1][0]
    assert first is not second
    draws = [(first.draw_keep(), second.draw_keep()) for _ in range(40)]
    assert any(a != b for a, b in draws)  # a copied stream would draw the same k every time


@pytest.mark.parametrize("order", [["nested_dropout", "coteaching"], ["coteaching", "nested_dropout"]])
def test_the_width_report_is_of_the_network_evaluation_runs(order):
    module, nested = nested_pair(order)
    pair = module.model
    images = torch.randn(24, 1, 4, 4)
    with torch.no_grad():
        labels = pair.nets[1].eval()(images).argmax(-1)  # network 2 is always right at full width
    pair.best.fill_(1)
    batches = [(images, labels, None)]
    report = nested.test_report(module.eval_network(), batches, batches)
    assert report["nested_dropout_acc_by_k"]["16"] == 1.0
    assert report["nested_dropout_val_acc_at_k"] == 1.0 and 1 <= report["nested_dropout_k"] <= 16


@pytest.mark.slow
def test_nested_coteaching_trains_end_to_end_and_reports_k(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[coteaching,nested_dropout]", "data.noise.type=symmetric",
                        "data.noise.rate=0.4", "regularizer.coteaching.num_gradual=1", "trainer.max_epochs=2",
                        "logger=none", "backbone.widths=[8,16]", "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed"
    assert 1 <= payload["nested_dropout_k"] <= 16
    assert list(payload["nested_dropout_acc_by_k"]) == ["1", "2", "4", "8", "16"]
    assert 0.0 <= payload["nested_dropout_test_acc_at_k"] <= 1.0
