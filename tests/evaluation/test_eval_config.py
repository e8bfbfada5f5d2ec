"""The `eval` group composes like the other list groups, and every bad value is one line naming it, exit code 2,
before any run directory exists. In process, through the CLI entry (the real command is in tests/e2e)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from regbench.run.cli import main as train_main
from regbench.evaluation import build_evaluations


def refused(args: list[str], tmp_path: Path, monkeypatch, capsys) -> str:
    """Run `regbench train ARGS logger=none` in tmp_path; it must exit 2 with one line and write nothing."""
    monkeypatch.chdir(tmp_path)
    assert train_main([*args, "logger=none"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("regbench train: error: "), stderr
    assert list(tmp_path.iterdir()) == []
    return stderr.strip().removeprefix("regbench train: error: ")


def test_the_eval_group_composes_every_member_with_its_defaults():
    with initialize_config_module("regbench.conf", version_base="1.3"):
        assert compose("config").eval == {}
        cfg = compose("config", overrides=["eval=[ood,farms]", "eval.ood.datasets=[mnist,synthetic]"])
    assert list(cfg.eval) == ["ood", "farms"]
    assert cfg.eval.ood == {"datasets": ["mnist", "synthetic"], "scores": ["msp", "max_logit", "energy", "mahalanobis"],
                            "energy_temperature": 1.0, "mahalanobis_epsilon": 0.0, "max_images": 10000,
                            "mahalanobis_layers": "penultimate", "mahalanobis_ensemble_fit": "fgsm",
                            "mahalanobis_ensemble_l2": 0.001, "mahalanobis_fgsm_epsilon": 0.05}
    assert cfg.eval.farms == {"aspect_ratio": 1.0, "xmin": "median", "min_eigenvalues": 5}


def test_the_shift_evaluations_compose_with_their_defaults():
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["eval=[corruptions,lame]", "eval.lame.corruption=contrast"])
    assert cfg.eval.corruptions == {"names": ["gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur",
                                              "contrast", "brightness", "pixelate"], "severities": [1, 2, 3, 4, 5]}
    assert cfg.eval.lame == {"knn": 5, "max_steps": 100, "batch_size": 64, "corruption": "contrast", "severity": 5}


def test_saturate_is_taken_for_colour_images():
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=colored_digits", "eval=[corruptions,lame]",
                                           "eval.corruptions.names=[saturate]", "eval.lame.corruption=saturate"])
    evaluations = build_evaluations(OmegaConf.to_container(cfg.eval), OmegaConf.to_container(cfg.data), 0,
                                    cfg.backbone.name)
    assert evaluations[0].names == ["saturate"] and evaluations[1].corruption == "saturate"


@pytest.mark.parametrize("args,message", [
    (["eval=[ood,fars]"], "eval='fars' is not a known eval; allowed: corruptions, farms, lame, ood"),
    (["eval=[ood]", "eval.ood.datasets=[imagenet]"], "eval.ood.datasets=['imagenet'] is invalid: must be a non-empty "
                                                     "list of distinct names from cifar10, cifar100, digits, "
                                                     "fashion_mnist, mnist, svhn, synthetic, heldout"),
    (["eval=[ood]", "eval.ood.datasets=[]"], "eval.ood.datasets=[] is invalid: must be a non-empty list"),
    (["eval=[ood]", "eval.ood.datasets=[digits]"], "eval.ood.datasets=['digits'] is invalid: must not hold the "
                                                   "in-distribution dataset data=digits"),
    (["eval=[ood]", "eval.ood.scores=[msp,odin]"], "eval.ood.scores=['msp', 'odin'] is invalid: must be a non-empty "
                                                   "list of distinct names from msp, max_logit, energy, mahalanobis, "
                                                   "mahalanobis_ensemble, method"),
    (["eval=[ood]", "eval.ood.scores=[msp,method]", "regularizer=[dropout]"],
     "eval.ood.scores holds 'method', but regularizer=['dropout'] trains no OOD method: add one of "),
    (["eval=[ood]", "eval.ood.energy_temperature=0"], "eval.ood.energy_temperature=0 is invalid: must be a number > 0"),
    (["eval=[ood]", "eval.ood.mahalanobis_epsilon=-0.1"], "eval.ood.mahalanobis_epsilon=-0.1 is invalid: must be a "
                                                          "number >= 0"),
    (["eval=[ood]", "eval.ood.max_images=0"], "eval.ood.max_images=0 is invalid: must be an integer > 0"),
    (["eval=[ood]", "+eval.ood.temperature=2"], "eval.ood.temperature=2 is not a key regbench reads"),
    (["eval=[farms]", "eval.farms.aspect_ratio=0.5"], "eval.farms.aspect_ratio=0.5 is invalid: must be a number >= 1"),
    (["eval=[ood]", "data=modular"], "eval=[ood] compares images, but data=modular's inputs are one-hot codes of "
                                     "numbers; drop ood from eval or train on an image dataset"),
    (["eval=[corruptions]", "eval.corruptions.names=[rain]"], "eval.corruptions.names=['rain'] is invalid: must be "
                                                              "a non-empty list of distinct names from gaussian_noise, "
                                                              "shot_noise, impulse_noise, gaussian_blur, contrast, "
                                                              "brightness, saturate, pixelate, speckle_noise, "
                                                              "defocus_blur, glass_blur, motion_blur, zoom_blur, snow, "
                                                              "fog, elastic_transform, jpeg_compression"),
    (["eval=[corruptions]", "eval.corruptions.names=[fog,frost]"], "eval.corruptions.names=['fog', 'frost'] is "
                                                                   "invalid: frost is not built: CIFAR-10-C's frost "
                                                                   "blends in crops of the paper's six frost "
                                                                   "photographs, which regbench does not ship; leave "
                                                                   "it out"),
    (["eval=[lame]", "eval.lame.corruption=spatter"], "eval.lame.corruption='spatter' is invalid: spatter is not "
                                                      "built: CIFAR-10-C's spatter draws its drops with OpenCV's Canny "
                                                      "edges"),
    (["eval=[corruptions]", "eval.corruptions.names=[contrast,saturate]"], "eval.corruptions.names=['contrast', "
                                                                           "'saturate'] is invalid: saturate needs "
                                                                           "colour (3-channel) images, but "
                                                                           "data=digits has 1 channel(s)"),
    (["eval=[lame]", "eval.lame.corruption=saturate", "data=mnist"], "eval.lame.corruption='saturate' is invalid: "
                                                                     "saturate needs colour (3-channel) images, but "
                                                                     "data=mnist has 1 channel(s)"),
    (["eval=[corruptions]", "eval.corruptions.severities=[0,1]"], "eval.corruptions.severities=[0, 1] is invalid: "
                                                                  "must be a non-empty list of distinct severities "
                                                                  "from 1, 2, 3, 4, 5"),
    (["eval=[corruptions]", "eval.corruptions.severities=[]"], "eval.corruptions.severities=[] is invalid"),
    (["eval=[corruptions]", "data=modular"], "eval=[corruptions] corrupts or reorders test images held in memory, "
                                             "but data=modular is not one of them; use one of cifar10, "),
    (["eval=[lame]", "data=modular"], "eval=[lame] corrupts or reorders test images held in memory, but "
                                      "data=modular is not one of them"),
    (["eval=[lame]", "eval.lame.knn=0"], "eval.lame.knn=0 is invalid: must be an integer > 0"),
    (["eval=[lame]", "eval.lame.max_steps=2.5"], "eval.lame.max_steps=2.5 is invalid: must be an integer > 0"),
    (["eval=[lame]", "eval.lame.batch_size=0"], "eval.lame.batch_size=0 is invalid: must be an integer > 0"),
    (["eval=[lame]", "eval.lame.corruption=rain"], "eval.lame.corruption='rain' is invalid: must be null or one of "
                                                   "gaussian_noise, shot_noise, impulse_noise, gaussian_blur, "
                                                   "contrast, brightness, saturate, pixelate, speckle_noise, "),
    (["eval=[lame]", "eval.lame.severity=6"], "eval.lame.severity=6 is invalid: must be a severity from 1, 2, 3, 4, 5"),
    (["+eval.farms.min_eigenvalues=3"], "eval.farms.min_eigenvalues=3 sets a parameter of evaluation farms, "
                                        "which is not selected"),
    (["eval=[ood]", "eval.ood.datasets=[heldout]"], "eval.ood.datasets=['heldout'] is invalid: heldout is the test "
                                                    "images of the classes data.holdout_classes holds out, and it "
                                                    "holds none"),
    (["data.holdout_classes=[10]"], "data.holdout_classes=[10] is invalid: the dataset's classes are 0..9"),
    (["data.holdout_classes=[0,1,2,3,4,5,6,7,8,9]"], "data.holdout_classes=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9] is "
                                                     "invalid: must leave at least one of the 10 classes"),
    (["data.holdout_classes=[1,1]"], "data.holdout_classes=[1, 1] is invalid: must be a list of distinct class "
                                     "indices >= 0"),
    (["data.holdout_classes=[-1]"], "data.holdout_classes=[-1] is invalid: must be a list of distinct class indices"),
    (["data=colored_digits", "data.holdout_classes=[1]"], "data.holdout_classes=[1] is invalid: data=colored_digits "
                                                          "cannot hold classes out; allowed datasets: cifar10, "),
    (["data.holdout_classes=[1]", "data.noise.type=asymmetric", "data.noise.rate=0.2"],
     "data.noise.type='asymmetric' is invalid: names the dataset's original classes, which data.holdout_classes "
     "relabels"),
    (["eval=[ood]", "eval.ood.mahalanobis_layers=all", "backbone=mlp"], "eval.ood.mahalanobis_layers='all' is "
                                                                         "invalid: all takes the outputs of the "
                                                                         "backbone's stages, and backbone=mlp has "
                                                                         "none"),
    (["eval=[ood]", "eval.ood.mahalanobis_layers=first"], "eval.ood.mahalanobis_layers='first' is invalid: allowed: "
                                                          "penultimate, all"),
    (["eval=[ood]", "eval.ood.mahalanobis_ensemble_fit=test"], "eval.ood.mahalanobis_ensemble_fit='test' is invalid: "
                                                               "allowed: fgsm, ood_validation"),
    (["eval=[ood]", "eval.ood.mahalanobis_ensemble_l2=0"], "eval.ood.mahalanobis_ensemble_l2=0 is invalid: must be a "
                                                           "number > 0"),
    (["eval=[ood]", "eval.ood.mahalanobis_fgsm_epsilon=0"], "eval.ood.mahalanobis_fgsm_epsilon=0 is invalid: must "
                                                            "be a number > 0"),
    (["eval=[ood]", "eval.ood.scores=[mahalanobis_ensemble]", "data.val_fraction=0"],
     "eval.ood.scores=['mahalanobis_ensemble'] is invalid: mahalanobis_ensemble fits its layer weights on the "
     "validation split, but data.val_fraction=0 leaves none"),
])
def test_bad_evaluations_are_refused_in_one_line(args, message, tmp_path, monkeypatch, capsys, absent_data_files):
    assert refused(args, tmp_path, monkeypatch, capsys).startswith(message)
