"""Output agreement between an engine's variant and the PyTorch model it came from,
checked before the variant is timed: a fast wrong model is not a result."""

from __future__ import annotations

import torch

from infersearch.core.errors import ConfigError


class AgreementError(RuntimeError):
    pass


def _labels(y: torch.Tensor) -> torch.Tensor:
    return y.argmax(dim=1) if y.dim() == 2 and y.shape[1] > 1 else (y.reshape(-1) > 0.5)


def agreement(reference: torch.Tensor, out: torch.Tensor) -> dict[str, float]:
    if out.shape != reference.shape:
        raise ConfigError("engine", f"output shape {tuple(out.shape)} differs from PyTorch's {tuple(reference.shape)}")
    diff = (out.float() - reference.float()).abs().max().item()
    scale = reference.float().abs().max().item() or 1.0
    return {
        "max_abs_diff": diff,
        "rel_diff": diff / scale,
        "label_agreement": (_labels(out) == _labels(reference)).float().mean().item(),
    }


def check(reference: torch.Tensor, out: torch.Tensor, exact: bool) -> dict[str, float]:
    """fp32 without quantization must match closely; reduced precision and int8 must
    keep (almost) every predicted label."""
    a = agreement(reference, out)
    if exact and a["rel_diff"] > 1e-3:
        raise AgreementError(f"fp32 engine output differs from PyTorch: relative max diff {a['rel_diff']:.2e}")
    if a["label_agreement"] < 0.9:
        raise AgreementError(f"engine output agrees with PyTorch on only {a['label_agreement']:.0%} of labels")
    return a
