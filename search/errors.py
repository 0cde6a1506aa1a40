"""Errors a user can act on: one line naming the key and what is allowed."""


class ConfigError(ValueError):
    """A configuration value or combination that cannot run."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class UnsupportedError(ConfigError):
    """A combination the current device or backend cannot run."""
