"""Bad noise / imbalance / balance / sampler settings end in one line naming the key, the value and what is allowed."""
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
    (["data.balance.type=oversample"],
     "data.balance.type='oversample' is invalid: allowed: none, upsample, upweight, smote"),
    (["data.balance.type=smote", "data.balance.smote_k=0"],
     "data.balance.smote_k=0 is invalid: must be an integer >= 1"),
    (["data.balance.type=smote", "data.imbalance.type=exponential", "data.imbalance.factor=100"],
     "data.balance.smote_k=5 is invalid: class 6 has only 5 training images; SMOTE needs more than smote_k"),
    (["data.balance.type=smote", "data.balance.smote_k=1", "data.imbalance.type=step", "data.imbalance.factor=100"],
     "data.balance.smote_k=1 is invalid: class 5 has only 1 training images"),  # no neighbour at all
    (["data.balance.type=smote", "data.noise.type=symmetric", "data.noise.rate=0.2"],
     "data.balance.type='smote' is invalid: needs clean training labels (data.noise.type=none"),
    (["data=image_folder", "data.root=/tmp", "data.balance.type=smote"],
     "data.balance.type='smote' is invalid: synthesizes images in memory, so a folder dataset needs "
     "data.storage=memory"),
    (["data.balance.type=upsample", "data.balance.tau_end=0", "data.balance.switch_epoch=1"],
     "data.balance.tau_end=0 is invalid: must be null (no cooldown) or a number > 0"),
    (["data.balance.type=upsample", "data.balance.tau_end=-1", "data.balance.switch_epoch=1"],
     "data.balance.tau_end=-1 is invalid"),
    (["data.balance.type=upsample", "data.balance.tau=2", "data.balance.tau_end=3", "data.balance.switch_epoch=1"],
     "data.balance.tau_end=3 is invalid: must be below balance.tau=2: cooldown lowers the sampling temperature"),
    (["data.balance.type=upsample", "data.balance.tau_end=1", "data.balance.switch_epoch=0"],
     "data.balance.switch_epoch=0 is invalid: must be null (no cooldown) or an integer >= 1"),
    (["data.balance.type=upsample", "data.balance.tau_end=1"],
     "data.balance.switch_epoch=None is invalid: cooldown needs both balance.tau_end and balance.switch_epoch"),
    (["data.balance.type=upweight", "data.balance.tau_end=1", "data.balance.switch_epoch=2"],
     "data.balance.tau_end=1 is invalid: cooldown lowers the sampling temperature, so it needs "
     "balance.type=upsample (not 'upweight')"),
    (["data.balance.type=smote", "data.balance.tau_end=1", "data.balance.switch_epoch=2"],
     "data.balance.tau_end=1 is invalid: cooldown lowers the sampling temperature"),
    (["data.balance.type=upsample", "data.balance.tau_end=1", "data.balance.switch_epoch=3", "trainer.max_epochs=3"],
     "data.balance.switch_epoch=3 is invalid: must be below trainer.max_epochs=3"),
    (["data.balance.tau=0"], "data.balance.tau=0 is invalid: must be a number > 0"),
    (["data=mnist", "data.cache=maybe"], "data.cache='maybe' is invalid: must be true or false"),
    (["data.sampler=random"], "data.sampler='random' is invalid: allowed: full, rs2"),
    (["data.sampler=rs2", "data.rs2.fraction=0"], "data.rs2.fraction=0 is invalid: must be a number in (0, 1]"),
    (["data.sampler=rs2", "data.rs2.fraction=1.5"], "data.rs2.fraction=1.5 is invalid: must be a number in (0, 1]"),
    (["data.rs2.replacement=maybe"], "data.rs2.replacement='maybe' is invalid: must be true or false"),
    (["data.sampler=rs2", "data.balance.type=upsample"],
     "data.sampler='rs2' is invalid: draws each epoch's images itself, so it cannot run with "
     "data.balance.type=upsample"),
    (["data.sampler=rs2", "data.rs2.fraction=0.01"],
     "data.rs2.fraction=0.01 is invalid: leaves fewer than one batch of 64 of the 1295 training images per epoch"),
])
def test_bad_settings_are_one_line_errors(overrides, expected):
    with pytest.raises(UserError) as err:
        preflight(overrides, multirun=False)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


@pytest.mark.parametrize("dataset", ["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "synthetic"])
def test_every_dataset_config_passes_preflight_with_noise_and_imbalance(dataset, absent_data_files):
    preflight([f"data={dataset}", "data.noise.type=symmetric", "data.noise.rate=0.2",
               "data.imbalance.type=step", "data.imbalance.factor=10", "data.balance.type=upweight"], multirun=False)
