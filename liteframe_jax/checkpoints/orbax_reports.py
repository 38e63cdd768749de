"""Keeping orbax's second-hand failure reports out of the user's way.

When an orbax read or write fails (a truncated checkpoint, a full disk), the exception reaches the caller, which
says it in one line. Orbax and tensorstore also report the same failure on the side, once per array: background
threads log it with a traceback, asyncio logs every task whose exception nobody retrieved, and tensorstore reads
still in flight after orbax closed its event loop end in "Event loop is closed" tracebacks. For a real model that
is hundreds of lines burying the one that matters. These helpers drop exactly those reports and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import sys

_installed = False


def is_closed_loop_report(unraisable) -> bool:
    """Whether a sys.unraisablehook report is tensorstore calling back into an event loop orbax already closed."""
    e = unraisable.exc_value
    return isinstance(e, RuntimeError) and str(e) == "Event loop is closed"


def _hook_dropping_closed_loop_reports(previous):
    def hook(unraisable):
        if not is_closed_loop_report(unraisable):
            previous(unraisable)
    return hook


@contextlib.contextmanager
def closed_loop_reports_dropped():
    """While active, "Event loop is closed" reports are dropped; every other unraisable exception is reported."""
    previous = sys.unraisablehook
    sys.unraisablehook = _hook_dropping_closed_loop_reports(previous)
    try:
        yield
    finally:
        sys.unraisablehook = previous


class _OrbaxRetoldFailures(logging.Filter):
    """Drops orbax's error records that carry a traceback: a background save or commit thread failed, and orbax
    raises that exception again in the thread that waits for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        retold = record.levelno >= logging.ERROR and record.exc_info and "/orbax/" in record.pathname
        return not retold


def quiet_background_failure_reports() -> None:
    """For a command-line program, for the rest of the process: drops the side reports described above (the
    failure itself still reaches the caller as an exception). Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # "Task/Future exception was never retrieved"
    logging.getLogger("absl").addFilter(_OrbaxRetoldFailures())  # orbax logs through absl.logging
    sys.unraisablehook = _hook_dropping_closed_loop_reports(sys.unraisablehook)
