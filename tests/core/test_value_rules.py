"""Value rules declared with the registries (regbench.specs.values): the first, torch-free stage of the config
checks refuses a bad value, and building an entry from code applies the same rules."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from regbench.errors import ParamError, UserError
from regbench.registry import OPTIONAL, Entry, Registry
from regbench.specs import values

# (overrides, the one line the torch-free stage refuses them with)
BAD_VALUES = [
    (["optim.lr=-1"], "optim.lr=-1 is invalid: must be a number > 0"),
    (["optim.weight_decay=-0.1"], "optim.weight_decay=-0.1 is invalid: must be a number >= 0"),
    (["optim.momentum=1.0"], "optim.momentum=1.0 is invalid: must be in [0, 1)"),
    (["optim=adamw", "optim.betas=[0.9,1.5]"], "optim.betas=[0.9, 1.5] is invalid: must be two numbers in [0, 1)"),
    (["optim.project=yes"], "optim.project='yes' is invalid: must be true or false"),
    (["sched.warmup_epochs=-1"], "sched.warmup_epochs=-1 is invalid: must be a number >= 0"),
    (["norm=groupnorm", "norm.groups=0"], "norm.groups=0 is invalid: must be an integer > 0"),
    (["norm.momentum=0"], "norm.momentum=0 is invalid: must be in (0, 1]"),
    (["norm.eps=0"], "norm.eps=0 is invalid: must be a number > 0"),
    (["backbone=vit_tiny", "norm=unified_norm", "norm.window=1"],
     "norm.window=1 is invalid: must be an integer >= 2 (the number of recent iterations"),
    (["backbone=mlp", "backbone.hidden=[]"], "backbone.hidden=[] is invalid: must be a non-empty list of positive"),
    (["backbone=resnet18", "backbone.width=0"], "backbone.width=0 is invalid: must be an integer > 0"),
    (["regularizer=[dropout]", "regularizer.dropout.rate=1.5"], "regularizer.dropout.rate=1.5 is invalid: must be in"),
    (["regularizer=[cutmix]", "regularizer.cutmix.prob=2"], "regularizer.cutmix.prob=2 is invalid: must be a "
                                                            "probability in [0, 1]"),
    (["regularizer=[label_smoothing]", "regularizer.label_smoothing.eps=1.0"],
     "regularizer.label_smoothing.eps=1.0 is invalid: must be in [0, 1) (1 would make every target uniform"),
    (["regularizer=[ema]", "regularizer.ema.warmup=1"], "regularizer.ema.warmup=1 is invalid: must be true or false"),
]


def test_bad_values_are_refused_by_the_torch_free_stage():
    """Every case in one interpreter that never imports torch (the checks a printed config runs)."""
    code = f"""
import json, sys
from regbench.errors import UserError
from regbench.sweeps.preflight import preflight
messages = []
for overrides in {[args for args, _ in BAD_VALUES]!r}:
    try:
        preflight(overrides, multirun=False, writes=False, builds=False)
        messages.append(None)
    except UserError as err:
        messages.append(str(err))
print(json.dumps({{"messages": messages, "torch": "torch" in sys.modules}}))
"""
    result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.splitlines()[-1])
    assert result["torch"] is False
    for (args, expected), message in zip(BAD_VALUES, result["messages"]):
        assert message is not None and message.startswith(expected), (args, message)


def test_good_values_pass_the_torch_free_stage():
    from regbench.sweeps.preflight import preflight

    preflight(["optim=adamw", "optim.betas=[0.0,0.99]", "norm=groupnorm", "norm.groups=1", "backbone=mlp",
               "backbone.hidden=[4]", "regularizer=[dropout]", "regularizer.dropout.rate=0"],
              multirun=False, writes=False, builds=False)


def test_building_an_entry_from_code_applies_the_same_rules():
    from regbench.norms import get_norm
    from regbench.regularizers import create_regularizer

    with pytest.raises(UserError, match=r"^norm.groups=0 is invalid: must be an integer > 0$"):
        get_norm("groupnorm", 8, groups=0)
    with pytest.raises(UserError, match=r"^regularizer.dropout.rate=1.5 is invalid: must be in \[0, 1\)$"):
        create_regularizer("dropout", rate=1.5)
    assert create_regularizer("dropout", rate=0.0).rate == 0.0


def test_a_rule_for_a_parameter_the_entry_does_not_read_is_a_programming_error():
    with pytest.raises(ValueError, match=r"'sgd' declares value rules for \['lrr'\]"):
        Registry("optimizer", "optim", entries={"sgd": Entry(__name__, {"lr": OPTIONAL}, {"lrr": values.boolean})})


@pytest.mark.parametrize("rule,good,bad", [
    (values.below_one, [0, 0.0, 0.999], [1, 1.0, -0.01, True, "0.5", None]),
    (values.unit_interval, [0, 1, 0.5], [1.01, -0.01, False]),
    (values.running_momentum, [1, 0.01], [0, -0.1, 1.01, True]),
    (values.smoothing, [0, 0.5], [1.0, -0.1]),
    (values.boolean, [True, False], [0, 1, "true", None]),
    (values.at_least(2), [2, 10], [1, 2.0, True, -3]),
    (values.betas, [(0.9, 0.999), [0, 0], OmegaConf.create([0.5, 0.5])], [(0.9,), (0.9, 1.0), "ab", (True, 0.5)]),
    (values.widths, [[1], (64, 32), OmegaConf.create([3])], [[], [0], [2.0], "12", [True]]),
])
def test_each_rule_accepts_its_edges_and_refuses_past_them(rule, good, bad):
    for value in good:
        rule("key", value)
    for value in bad:
        with pytest.raises(ParamError, match=r"^key="):
            rule("key", value)
