"""A request body as a float32 batch of the served model's sample shape, or a one-line reason it is not."""

from __future__ import annotations

import io
import json

import numpy as np

NPY = "application/x-npy"
JSON_TYPES = ("application/json", "")  # no content-type: JSON, as before


class BadRequest(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


def parse(body: bytes, content_type: str, sample_shape: tuple[int, ...]) -> np.ndarray:
    """JSON ``{"inputs": [...]}`` (one sample or a list of them) or an ``.npy`` array."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == NPY:
        x = _npy(body)
    elif kind in JSON_TYPES:
        x = _json(body)
    else:
        raise BadRequest(415, f"content-type {kind!r} is not served here; use application/json or {NPY}")
    if x.dtype.kind not in "fiub":
        raise BadRequest(422, f"inputs must be numbers, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.shape == sample_shape:
        x = x[None]
    if x.ndim == len(sample_shape) + 1 and x.shape[0] == 0:
        raise BadRequest(422, "inputs is an empty batch")
    if x.shape[1:] != sample_shape:
        want = "x".join(map(str, sample_shape))
        raise BadRequest(422, f"inputs has shape {list(x.shape)}; expected one sample {want} or a batch n x {want}")
    if not np.isfinite(x).all():
        raise BadRequest(422, "inputs holds NaN or infinity")
    return np.ascontiguousarray(x)


def _json(body: bytes) -> np.ndarray:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
    except RecursionError as exc:  # {"inputs": [[[[... 100,000 deep
        raise BadRequest(400, "body is nested too deeply to be a tensor") from exc
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise BadRequest(422, 'body must be a JSON object with "inputs"')
    try:
        return np.asarray(doc["inputs"])
    except ValueError as exc:  # ragged nesting
        raise BadRequest(422, f"inputs is not a rectangular array: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest(400, "inputs is nested too deeply to be a tensor") from exc


def _npy(body: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as exc:
        raise BadRequest(400, f"body is not a .npy array: {exc}") from exc
