"""Run a trial in a child process, so a crash (segfault in a native engine, the OOM killer,
``os._exit``) fails that trial instead of the study.

Children come from a fork server that has already imported torch and the engines, so a trial
pays a fork, not an interpreter start and the imports.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any

# infersearch.trial.preload last: it loads the baseline that preload.offer named, with the imports above done
_PRELOAD = ["infersearch.trial.evaluate", "infersearch.engines", "torch", "onnxruntime", "infersearch.trial.preload"]
_context: mp.context.BaseContext | None = None
_shown: set[tuple[str, str]] = set()  # (category, text) of the trials' warnings shown in this process
Relayed = tuple[str, str, str, int]  # category as module:qualname, text, file, line


class TrialCrashed(RuntimeError):
    """The trial's process died without returning a result."""


class TrialRaised(RuntimeError):
    """The trial raised in its process; the message keeps the original type and text."""


def _context_once() -> mp.context.BaseContext:
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(_PRELOAD)
    return _context


def _portable(w: warnings.WarningMessage) -> Relayed:
    return f"{w.category.__module__}:{w.category.__qualname__}", str(w.message), w.filename, w.lineno


def relay(records: list[Relayed]) -> None:
    """Show a trial's warnings here, each distinct one once per process: every trial's process starts
    from the fork server with none shown, so a study would print them once per trial."""
    for category, text, filename, lineno in records:
        if (category, text) in _shown:
            continue
        _shown.add((category, text))
        module, _, name = category.partition(":")
        cls = getattr(sys.modules.get(module), name, None)
        cls = cls if isinstance(cls, type) and issubclass(cls, Warning) else UserWarning
        warnings.warn_explicit(text, cls, filename, lineno)


class _Kept(logging.Handler):
    """A trial's log lines at WARNING and above, sent back to be logged by the parent: a fork-server child
    has no logging configured, so they would print bare, without the study's log prefix."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.levelno, record.getMessage()))


def _child(fn: Callable[..., Any], args: tuple, conn) -> None:
    kept = _Kept()
    logging.getLogger().addHandler(kept)
    with warnings.catch_warnings(record=True) as caught:
        try:
            kind, payload = "ok", fn(*args)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, pickled or as text
            kind, payload = "raised", exc
    shown = ([_portable(w) for w in caught], kept.lines)
    try:
        conn.send((kind, payload, shown))
    except Exception as unsent:  # noqa: BLE001 - a result or an exception that does not pickle
        exc = payload if kind == "raised" else unsent
        conn.send(("raised", TrialRaised(f"{type(exc).__name__}: {exc}"), shown))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a child process; its exceptions re-raised here, its death as TrialCrashed.

    Inside a launcher's worker process (joblib's loky, submitit) the job is already apart from
    the sweeper, whose launch errors are recorded as failed trials: run in place there.
    """
    if mp.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        return fn(*args)
    ctx = _context_once()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, child), daemon=True)
    proc.start()
    child.close()
    try:
        kind, payload, (shown, lines) = parent.recv()
    except EOFError:
        kind, payload, shown, lines = "died", None, [], []
    proc.join()
    relay(shown)
    for name, level, text in lines:
        logging.getLogger(name).log(level, "%s", text)
    if kind == "ok":
        return payload
    if kind == "raised":
        raise payload
    code = proc.exitcode
    cause = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
    raise TrialCrashed(f"the trial's process died ({cause}) without a result")
