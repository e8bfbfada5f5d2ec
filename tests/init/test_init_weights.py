"""Starting from saved weights (regbench.init.weights): what loads where, the one-line mismatch, a new head, frozen
parameters and frozen norm statistics, a co-teaching pair's two sources, and a resumed run left alone."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regbench.backbones import build_backbone
from regbench.errors import UserError
from regbench.init.frozen_norms import FrozenNormStatistics
from regbench.init.source import InitSource
from regbench.init.weights import fit_source, init_report, initialize_backbone
from regbench.optim import build_optimizer
from regbench.regularizers import build_regularizers
from regbench.run.module import ClassifierModule

BATCHNORM = {"name": "batchnorm", "momentum": 0.1, "eps": 1e-5}
SGD = {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}
INIT = {"from": None, "strict": True, "reset_head": False, "freeze": [], "freeze_bn_stats": False}


def convnet(seed: int, widths=(4, 8), classes: int = 10):
    torch.manual_seed(seed)
    return build_backbone({"name": "convnet", "widths": list(widths)}, BATCHNORM, (1, 8, 8), classes)


def trained_stats(model) -> None:
    """Running statistics apart from the fresh ones, so that a load is visible in the buffers too."""
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 1, 8, 8) * 3 + 1)


def file_source(path) -> InitSource:
    return InitSource(str(path), path, "file", None)


def lightning_checkpoint(module, path):
    torch.save({"pytorch-lightning_version": "2.5", "epoch": 1, "state_dict": module.state_dict()}, path)
    return file_source(path)


def settings(source: InitSource | None = None, **changes):
    return {**INIT, "from": source.given if source else None, **changes}


def assert_same_tensors(model, source_model, skip_head: bool = False) -> None:
    source = source_model.state_dict()
    for key, tensor in model.state_dict().items():
        if not (skip_head and key.startswith("head.")):
            assert torch.equal(tensor, source[key]), key


def test_a_lightning_checkpoint_loads_the_sources_network_weights_and_statistics(tmp_path):
    source_model = convnet(seed=0)
    trained_stats(source_model)
    module = ClassifierModule(source_model, [], 10, SGD, {"name": "constant"})
    source = lightning_checkpoint(module, tmp_path / "src.ckpt")
    model = convnet(seed=1)
    initialization = initialize_backbone(settings(source), model, resumed=False)
    assert_same_tensors(model, source_model)
    report = init_report(settings(source), initialization.fits, model, resumed=False)
    assert report["sources"][0]["loaded"] == len(model.state_dict())
    assert report["sources"][0]["skipped"] == {} and report["sources"][0]["missing"] == []


def test_plain_state_dicts_load_from_pt_files_with_a_parallel_prefix_and_from_safetensors(tmp_path):
    from safetensors.torch import save_file

    source_model = convnet(seed=0)
    trained_stats(source_model)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source_model.state_dict().items()}}, tmp_path / "w.pt")
    save_file(source_model.state_dict(), tmp_path / "w.safetensors")
    for name in ("w.pt", "w.safetensors"):
        model = convnet(seed=1)
        initialize_backbone(settings(file_source(tmp_path / name)), model, resumed=False)
        assert_same_tensors(model, source_model)


def test_a_source_trained_with_a_head_wrapper_loads_its_classifier_into_the_bare_head(tmp_path):
    source_model = convnet(seed=0)
    module = ClassifierModule(source_model, build_regularizers({"dropout": {"rate": 0.5}}, seed=0), 10, SGD,
                              {"name": "constant"})
    assert "model.head.1.weight" in module.state_dict()
    source = lightning_checkpoint(module, tmp_path / "src.ckpt")
    model = convnet(seed=1)
    initialize_backbone(settings(source), model, resumed=False)
    assert torch.equal(model.head.weight, source_model.head[1].weight)


def test_a_mismatched_architecture_is_one_line_naming_the_first_mismatching_key_and_both_shapes(tmp_path):
    source = lightning_checkpoint(ClassifierModule(convnet(seed=0, widths=(4, 8)), [], 10, SGD, {"name": "constant"}),
                                  tmp_path / "src.ckpt")
    with pytest.raises(UserError) as caught:
        fit_source(source, convnet(seed=1, widths=(6, 8)), strict=True, reset_head=False)
    assert str(caught.value) == (
        f"init.from={str(tmp_path / 'src.ckpt')!r} does not fit this model: features.0.weight has shape (4, 1, 3, 3) "
        f"in the source and (6, 1, 3, 3) here; set init.strict=false to load only the matching keys")


def test_a_head_for_another_class_count_is_refused_unless_reset_and_not_strict_loads_what_matches(tmp_path):
    source_model = convnet(seed=0)
    source = lightning_checkpoint(ClassifierModule(source_model, [], 10, SGD, {"name": "constant"}),
                                  tmp_path / "src.ckpt")
    with pytest.raises(UserError, match=r"head\.weight has shape \(10, 8\) in the source and \(4, 8\) here; set "
                                        r"init\.reset_head=true for a new classifier"):
        fit_source(source, convnet(seed=1, classes=4), strict=True, reset_head=False)
    loose = fit_source(source, convnet(seed=1, classes=4), strict=False, reset_head=False)
    assert loose.skipped == {"head.weight": "shape (10, 8) in the source, (4, 8) here",
                             "head.bias": "shape (10,) in the source, (4,) here"}
    assert loose.missing == ["head.weight", "head.bias"]


def test_reset_head_gives_a_new_classifier_for_another_class_count_and_loads_the_rest(tmp_path):
    source_model = convnet(seed=0)
    trained_stats(source_model)
    source = lightning_checkpoint(ClassifierModule(source_model, [], 10, SGD, {"name": "constant"}),
                                  tmp_path / "src.ckpt")
    model = convnet(seed=1, classes=4)
    fresh_head = model.head.weight.detach().clone()
    initialization = initialize_backbone(settings(source, reset_head=True), model, resumed=False)
    assert_same_tensors(model, source_model, skip_head=True)
    assert torch.equal(model.head.weight, fresh_head) and model.head.weight.shape == (4, 8)
    assert initialization.fits[0].skipped == {"head.weight": "head reset (init.reset_head=true)",
                               "head.bias": "head reset (init.reset_head=true)"}
    assert initialization.fits[0].missing == []


def test_a_key_the_source_lacks_is_refused_when_strict(tmp_path):
    state = convnet(seed=0).state_dict()
    del state["features.3.weight"]
    torch.save(state, tmp_path / "w.pt")
    source = file_source(tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"this model's features\.3\.weight is not in the source; set "
                                        r"init\.strict=false"):
        fit_source(source, convnet(seed=1), strict=True, reset_head=False)
    assert fit_source(source, convnet(seed=1), strict=False, reset_head=False).missing == ["features.3.weight"]


def test_frozen_parameters_leave_the_optimizer_and_stay_unchanged_after_a_step(tmp_path):
    torch.save(convnet(seed=0).state_dict(), tmp_path / "w.pt")
    model = convnet(seed=1)
    init = settings(file_source(tmp_path / "w.pt"), freeze=["features.0", "features.1"])
    initialization = initialize_backbone(init, model, resumed=False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = build_optimizer(SGD, model)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    frozen = {"features.0.weight", "features.1.0.weight", "features.1.0.bias"}
    assert {name for name, p in model.named_parameters() if id(p) not in optimized} == frozen
    F.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8)).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) == (name in frozen), name
    assert init_report(init, initialization.fits, model, resumed=False)["frozen_parameters"] == 3


def test_a_freeze_prefix_that_names_no_parameter_is_refused():
    with pytest.raises(UserError, match=r"init\.freeze=\['feature'\] is invalid: 'feature' names no parameter of "
                                        r"this model \(its modules: features, stage_outputs, head;"):
        initialize_backbone(settings(freeze=["feature"]), convnet(seed=0), resumed=False)


def test_frozen_norm_statistics_keep_the_running_statistics_while_the_affine_parameters_train():
    model = convnet(seed=0)
    trained_stats(model)
    module = ClassifierModule(model, [], 10, SGD, {"name": "constant"})
    callback = FrozenNormStatistics()
    callback.on_fit_start(None, module)
    assert len(callback.norms) == 2
    module.train()
    callback.on_train_batch_start(None, module, None, 0)
    buffers = {name: b.clone() for name, b in module.named_buffers() if "running" in name}
    images = torch.randn(8, 1, 8, 8)
    F.cross_entropy(module(images), torch.arange(8)).backward()
    for name, value in module.named_buffers():
        if name in buffers:
            assert torch.equal(value, buffers[name]), name
    assert model.features[1][0].weight.grad is not None
    # The batch is normalized by the loaded running statistics: the same logits as evaluation mode.
    eval_logits = module.eval()(images)
    module.train()
    callback.on_train_batch_start(None, module, None, 1)
    assert torch.allclose(module(images), eval_logits)


def test_a_coteaching_pair_takes_one_source_per_network_through_its_wrappers(tmp_path):
    stack = {"nested_dropout": {"mu": 0.0, "sigma": 6.0},
             "coteaching": {"forget_rate": 0.2, "num_gradual": 2, "schedule": "paper"}}
    sources = []
    for seed, name in ((0, "a.pt"), (1, "b.pt")):
        torch.save(convnet(seed=seed).state_dict(), tmp_path / name)
        sources.append(file_source(tmp_path / name))
    init = {**INIT, "from": [source.given for source in sources]}
    model = convnet(seed=2)
    initialization = initialize_backbone(init, model, resumed=False)
    regularizers = build_regularizers(stack, seed=0)
    module = ClassifierModule(model, regularizers, 10, SGD, {"name": "constant"})
    initialization.initialize_pair(regularizers)
    first, second = module.model.nets
    assert "head.1.weight" in second.state_dict()  # nested dropout's wrapper renamed the head
    for net, seed in ((first, 0), (second, 1)):
        source = convnet(seed=seed).state_dict()
        for key, value in source.items():
            wrapped = key.replace("head.", "head.1.")
            assert torch.equal(net.state_dict()[wrapped], value), (seed, key)
    report = init_report(init, initialization.fits, model, resumed=False)
    assert [source["from"] for source in report["sources"]] == init["from"]


def test_a_resumed_run_keeps_its_own_weights_but_still_freezes_and_reports(tmp_path):
    torch.save(convnet(seed=0).state_dict(), tmp_path / "w.pt")
    model = convnet(seed=1)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    init = settings(file_source(tmp_path / "w.pt"), freeze=["features.0"])
    initialization = initialize_backbone(init, model, resumed=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, own[key]), key
    assert not model.features[0].weight.requires_grad
    assert init_report(init, initialization.fits, model, resumed=True)["resumed_own_checkpoint"] is True


def test_a_plain_timm_state_dict_loads_into_the_timm_backbone_with_its_classifier_as_the_head(tmp_path):
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("resnet18", pretrained=False, num_classes=7, in_chans=1)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    source = file_source(tmp_path / "resnet18.pth")
    model = build_backbone({"name": "timm", "model_name": "resnet18", "model_kwargs": {}}, BATCHNORM,
                           (1, 32, 32), 7)
    initialize_backbone(settings(source), model, resumed=False)
    assert torch.equal(model.head.weight, reference.fc.weight)
    assert torch.equal(model.body.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    images = torch.randn(2, 1, 32, 32)
    assert torch.allclose(model.eval()(images), reference.eval()(images), atol=1e-5)
