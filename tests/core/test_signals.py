"""SIGTERM outside Lightning's loops is remembered and turned into an orderly interruption."""
from __future__ import annotations

import os
import signal

import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException

from regbench.run.signals import SigtermFlag


def test_sigterm_before_training_is_remembered_and_raised_at_a_safe_point():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with SigtermFlag() as flag:
            flag.raise_if_received()  # nothing yet
            os.kill(os.getpid(), signal.SIGTERM)
            assert flag.received and seen == [signal.SIGTERM]  # the handler it replaced still hears it
            with pytest.raises(SIGTERMException):
                flag.raise_if_received()
        assert signal.getsignal(signal.SIGTERM) is not flag._handle  # restored on exit
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_during_setup_is_sent_again_once_training_starts():
    # Lightning installs its SIGTERM handler with a clear flag during trainer.fit's setup; the signal that came
    # before must reach it, or the run would train to the end.
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        flag = SigtermFlag()
        flag.on_train_start(trainer=None, pl_module=None)
        assert seen == []
        flag.received = True
        flag.on_train_start(trainer=None, pl_module=None)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
