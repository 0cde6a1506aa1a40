"""Run a trial in a child process, so a crash (segfault in a native engine, the OOM killer,
``os._exit``) fails that trial instead of the study.

Children come from a fork server that has already imported torch and the engines, so a trial
pays a fork, not an interpreter start and the imports.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable
from typing import Any

_PRELOAD = ["infersearch.trial", "infersearch.engines", "torch", "onnxruntime"]
_context: mp.context.BaseContext | None = None


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


def _child(fn: Callable[..., Any], args: tuple, conn) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, pickled or as text
        try:
            conn.send(("raised", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("raised", TrialRaised(f"{type(exc).__name__}: {exc}")))
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
        kind, payload = parent.recv()
    except EOFError:
        kind, payload = "died", None
    proc.join()
    if kind == "ok":
        return payload
    if kind == "raised":
        raise payload
    code = proc.exitcode
    cause = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
    raise TrialCrashed(f"the trial's process died ({cause}) without a result")
