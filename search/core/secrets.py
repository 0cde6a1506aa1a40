"""Credentials never reach a log, a report, a trial attribute or W&B."""

from __future__ import annotations

import re
from typing import Any

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd|sslpassword)=)[^&\s]+", re.I)
# "hf_token", "token", "auth_token": a secret; "prompt_tokens", "train_tokens": counts, not secrets
_SECRET_KEYS = re.compile(r"(api[_-]?key|password|secret|(^|[_-])token$)", re.I)


def mask_url(text: str) -> str:
    """``postgresql://user:pw@host/db?password=pw`` -> ``postgresql://user:***@host/db?password=***``."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def scrub(obj: Any) -> Any:
    """A copy of a nested config/result with URL passwords and secret-named values masked."""
    if isinstance(obj, dict):
        return {
            k: "***" if _SECRET_KEYS.search(str(k)) and isinstance(v, str) and v else scrub(v) for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return type(obj)(scrub(v) for v in obj)
    if isinstance(obj, str):
        return mask_url(obj)
    return obj
