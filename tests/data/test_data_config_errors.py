"""Bad noise / imbalance / balance settings end in one line naming the key, the value and what is allowed."""
import pytest

from regbench.sweeps.preflight import preflight
from regbench.errors import UserError


@pytest.mark.parametrize("overrides, expected", [
    (["data.noise.type=gaussian"], "data.noise.type='gaussian' is invalid: allowed: none, symmetric, asymmetric"),
    (["data.noise.type=symmetric", "data.noise.convention=uniform"],
     "data.noise.convention='uniform' is invalid: allowed: uniform_all, uniform_other, transition"),
    (["data.noise.rate=1.5"], "data.noise.rate=1.5 is invalid: must be a probability in [0, 1]"),
    (["data.noise.rate=-0.1"], "data.noise.rate=-0.1 is invalid"),
    (["data=synthetic", "data.noise.type=asymmetric"],
     "data.noise.type='asymmetric' is invalid: has no class map for data.name='synthetic'; defined for: cifar10"),
    (["data.noise.type=file", "data.noise.file=/nonexistent/CIFAR-10_human.pt"],
     "data.noise.file='/nonexistent/CIFAR-10_human.pt' is invalid: no such file"),
    (["data.noise.type=file"], "data.noise.file=None is invalid: must be the path of a CIFAR-10N/CIFAR-100N"),
    (["data.imbalance.type=linear"], "data.imbalance.type='linear' is invalid: allowed: none, exponential, step"),
    (["data.imbalance.factor=0.5"], "data.imbalance.factor=0.5 is invalid: must be a number >= 1"),
    (["data.balance.type=smote"], "data.balance.type='smote' is invalid: allowed: none, upsample, upweight"),
    (["data.balance.tau=0"], "data.balance.tau=0 is invalid: must be a number > 0"),
    (["data=mnist", "data.cache=maybe"], "data.cache='maybe' is invalid: must be true or false"),
])
def test_bad_settings_are_one_line_errors(overrides, expected):
    with pytest.raises(UserError) as err:
        preflight(overrides, multirun=False)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


@pytest.mark.parametrize("dataset", ["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "synthetic"])
def test_every_dataset_config_passes_preflight_with_noise_and_imbalance(dataset):
    preflight([f"data={dataset}", "data.noise.type=symmetric", "data.noise.rate=0.2",
               "data.imbalance.type=step", "data.imbalance.factor=10", "data.balance.type=upweight"], multirun=False)
