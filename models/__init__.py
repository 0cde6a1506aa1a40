"""Model zoo: each entry is a function returning a :class:`models.task.Task`."""

from infersearch.models.task import Splits, Task

__all__ = ["Splits", "Task"]
