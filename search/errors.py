"""Errors a user can act on: one line naming the key and what is allowed."""


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
