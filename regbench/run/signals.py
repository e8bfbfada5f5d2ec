"""SIGTERM outside Lightning's fit loop: remembered, then turned into an orderly interruption at a safe point.

Inside `trainer.fit`/`trainer.test` Lightning handles SIGTERM itself (it stops at the next batch boundary with
SIGTERMException, and calls this handler too); before and after them nothing would, and the default action
kills the process before it can record `status: interrupted`.
"""
from __future__ import annotations

import os
import signal
import threading

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class SigtermFlag(L.Callback):
    """Also a callback: a SIGTERM that arrived while `trainer.fit` was setting up, before Lightning installed its
    own handler (which starts from a clear flag), is sent again once training starts, so Lightning stops at the
    first batch boundary instead of training to the end."""

    def __init__(self) -> None:
        self.received = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.received = True
        if callable(self._previous):
            self._previous(signum, frame)  # e.g. submitit's own handler, which only logs

    def __enter__(self) -> "SigtermFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is threading.main_thread() and self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def raise_if_received(self) -> None:
        if self.received:
            raise SIGTERMException()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.received:
            os.kill(os.getpid(), signal.SIGTERM)
