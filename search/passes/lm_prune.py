"""Structured pruning of a Llama-style decoder into shapes its own config describes, so the pruned model
saves, reloads and generates like any other: MLP intermediate width, attention heads in whole KV groups,
and depth (whole decoder layers).

torch-pruning's dependency graph hangs on grouped-query attention (VainF/Torch-Pruning#527), so the
channels are chosen here (L2 magnitude, one width for every layer: the config has one
``intermediate_size`` and one head count) and removed with torch-pruning's own layer functions.
Layers are dropped by their block influence (ShortGPT: 1 - cosine similarity of a layer's input and
output on calibration text): the layers that change the residual stream least go first.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from infersearch.config import PruneConfig
from infersearch.models.task import Split


def _kept(n: int, ratio: float, round_to: int) -> int:
    keep = int(round(n * (1 - ratio) / round_to)) * round_to
    return min(n, max(round_to, keep))


def _lowest(scores: torch.Tensor, n: int) -> list[int]:
    return sorted(torch.argsort(scores)[:n].tolist())


@torch.no_grad()
def prune_mlp(model: nn.Module, ratio: float, round_to: int) -> int:
    """Every layer's MLP to the same intermediate width; returns it."""
    ff = model.config.intermediate_size
    keep = _kept(ff, ratio, round_to)
    for layer in model.model.layers:
        mlp = layer.mlp
        score = (
            mlp.gate_proj.weight.pow(2).sum(1) + mlp.up_proj.weight.pow(2).sum(1) + mlp.down_proj.weight.pow(2).sum(0)
        )
        drop = _lowest(score, ff - keep)
        if drop:
            tp.prune_linear_out_channels(mlp.gate_proj, drop)
            tp.prune_linear_out_channels(mlp.up_proj, drop)
            tp.prune_linear_in_channels(mlp.down_proj, drop)
    model.config.intermediate_size = keep
    return keep


@torch.no_grad()
def prune_kv_groups(model: nn.Module, ratio: float) -> int:
    """Remove the same number of whole KV groups (a KV head and the query heads that share it) from every
    layer; at least one stays. Returns the KV heads kept."""
    c = model.config
    kv, hd = c.num_key_value_heads, getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    share = c.num_attention_heads // kv
    drop_n = min(kv - 1, int(kv * ratio))
    if drop_n == 0:
        return kv
    for layer in model.model.layers:
        a = layer.self_attn
        q = a.q_proj.weight.view(kv, share * hd, -1).pow(2).sum((1, 2))
        k, v = (p.weight.view(kv, hd, -1).pow(2).sum((1, 2)) for p in (a.k_proj, a.v_proj))
        o = a.o_proj.weight.view(a.o_proj.out_features, kv, share * hd).pow(2).sum((0, 2))
        groups = _lowest(q + k + v + o, drop_n)
        q_idx = [g * share * hd + i for g in groups for i in range(share * hd)]
        kv_idx = [g * hd + i for g in groups for i in range(hd)]
        tp.prune_linear_out_channels(a.q_proj, q_idx)
        tp.prune_linear_out_channels(a.k_proj, kv_idx)
        tp.prune_linear_out_channels(a.v_proj, kv_idx)
        tp.prune_linear_in_channels(a.o_proj, q_idx)
    c.head_dim = hd  # explicit: no longer hidden_size / heads
    c.num_key_value_heads = kv - drop_n
    c.num_attention_heads = (kv - drop_n) * share
    return kv - drop_n


@torch.no_grad()
def block_influence(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Per decoder layer: 1 - cosine similarity of its input and output hidden states, over every token."""
    seen: list[float] = []

    def hook(_m, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        y = out[0] if isinstance(out, tuple) else out
        seen.append(1 - nn.functional.cosine_similarity(x.float(), y.float(), dim=-1).mean().item())

    handles = [layer.register_forward_hook(hook, with_kwargs=True) for layer in model.model.layers]
    try:
        model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return torch.tensor(seen)


def drop_layers(model: nn.Module, share: float, calibration: torch.Tensor) -> list[int]:
    """Drop ``share`` of the decoder layers (at least one stays), least influential first; returns the
    indices dropped."""
    layers = model.model.layers
    n = min(len(layers) - 1, int(round(len(layers) * share)))
    if n <= 0:
        return []
    dropped = _lowest(block_influence(model, calibration), n)
    kept = [layer for i, layer in enumerate(layers) if i not in dropped]
    for i, layer in enumerate(kept):  # the KV cache is indexed by layer
        for m in (layer, getattr(layer, "self_attn", None)):
            if m is not None and hasattr(m, "layer_idx"):
                m.layer_idx = i
    model.model.layers = nn.ModuleList(kept)
    model.config.num_hidden_layers = len(kept)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [t for i, t in enumerate(model.config.layer_types) if i not in dropped]
    return dropped


def prune_lm(model: nn.Module, cfg: PruneConfig, calibration: Split | None) -> nn.Module:
    """Depth first (judged on the whole model), then MLP width and (``prune.heads``) KV groups at ``ratio``."""
    model.eval()
    if cfg.depth > 0:
        if calibration is None:
            raise ValueError("prune.depth needs calibration text to judge the layers")
        drop_layers(model, cfg.depth, calibration.take(8))
    if cfg.ratio > 0:
        prune_mlp(model, cfg.ratio, cfg.round_to)
        if cfg.heads:
            prune_kv_groups(model, cfg.ratio)
    return model
