"""What the passes and engines need to know about a model's structure: its attention heads and
whether it is a transformer (which picks ONNX Runtime's transformer fusions and NNCF's model type).

Attention is recognised by Hugging Face's naming (``query``/``key``/``value`` projections and a
``num_attention_heads`` attribute), which the zoo's transformer follows too, and by
``nn.MultiheadAttention``.
"""

from __future__ import annotations

from torch import nn

PROJECTIONS = ("query", "key", "value")


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Modules whose heads can be pruned whole: they read their head count at run time."""
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "num_attention_heads", None), int)
        and all(isinstance(getattr(m, p, None), nn.Linear) for p in PROJECTIONS)
    ]


def head_counts(model: nn.Module) -> dict[nn.Linear, int]:
    """torch-pruning's ``num_heads``: every projection of every attention module, with its head count."""
    return {getattr(m, p): m.num_attention_heads for m in attention_modules(model) for p in PROJECTIONS}


def set_head_counts(model: nn.Module, counts: dict[nn.Module, int]) -> None:
    """After pruning whole heads: each module's head count (and Hugging Face's ``all_head_size``)."""
    for m in attention_modules(model):
        m.num_attention_heads = counts.get(m.query, m.num_attention_heads)
        if hasattr(m, "all_head_size"):
            m.all_head_size = m.query.out_features


def is_transformer(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.LayerNorm, nn.MultiheadAttention)) for m in model.modules()) or bool(
        attention_modules(model)
    )
