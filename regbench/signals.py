"""SIGTERM outside Lightning's fit loop: remembered, then turned into an orderly interruption at a safe point.

Inside `trainer.fit`/`trainer.test` Lightning handles SIGTERM itself (it stops at the next batch boundary with
SIGTERMException, and calls this handler too); before and after them nothing would, and the default action
kills the process before it can record `status: interrupted`.
"""
from __future__ import annotations

import signal
import threading

from lightning.pytorch.utilities.exceptions import SIGTERMException


class SigtermFlag:
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
