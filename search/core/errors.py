"""Errors a user can act on: one line naming the key and what is allowed, or the step that failed."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout


class ConfigError(ValueError):
    """A configuration value or combination that cannot run."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")

    def __reduce__(self):  # picklable across joblib/submitit workers
        return type(self), (self.key, self.message)


class UnsupportedError(ConfigError):
    """A combination the current device or backend cannot run: refused before any work."""


class TrialRejected(RuntimeError):
    """Stopped early: accuracy on a validation subset already rules out the accuracy constraint."""


class StepFailed(RuntimeError):
    """A library failed in one step of building a variant. The user sees one line: the step, the engine
    and the library's own message (its first line: converters print whole graph diffs)."""

    def __init__(self, step: str, engine: str, message: str) -> None:
        self.step, self.engine, self.message = step, engine, message
        super().__init__(f"{step} failed on {engine}: {message}")

    def __reduce__(self):  # crosses back from the trial's process
        return type(self), (self.step, self.engine, self.message)


def raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised, as ``package/module.py:line`` (the path below site-packages)."""
    tb = exc.__traceback__
    if tb is None:
        return "an unknown place"
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = tb.tb_frame.f_code.co_filename
    for marker in ("site-packages/", "dist-packages/"):
        path = path.rsplit(marker, 1)[-1]
    return f"{path}:{tb.tb_lineno}"


def library_message(exc: BaseException) -> str:
    """The exception's type and the first non-empty line of its message; where it was raised if it has none."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else f"{type(exc).__name__} raised at {raised_at(exc)}"


@contextmanager
def library_step(step: str, engine: str) -> Iterator[None]:
    """Re-raise a library's failure inside this step as one :class:`StepFailed` line. What the library
    prints meanwhile (ONNX's exporter its whole graph when it fails, torch.export the failing program,
    NNCF its progress bars and tables, ONNX Runtime one warning per session) is dropped: the trial line
    says what happened."""
    try:
        with _output_dropped():
            yield
    except (ConfigError, TrialRejected, StepFailed):
        raise
    except Exception as exc:
        raise StepFailed(step, engine, library_message(exc)) from exc


@contextmanager
def _output_dropped() -> Iterator[None]:
    """stdout and stderr at the file descriptors: torch's ONNX exporter prints its graph from C++, and
    torch.export logs the failing program through a handler bound to the original stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink, redirect_stdout(io.StringIO()):
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def error_line(exc: BaseException) -> str:
    """What a failed trial records as its ``error``: a StepFailed line says what it is already."""
    return str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
