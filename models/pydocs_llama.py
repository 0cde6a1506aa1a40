"""A Llama-style decoder (grouped-query attention, SwiGLU, RMSNorm, tied embeddings) trained here on text
that ships with the machine (models/text.py: the Python documentation's sources, else the standard
library's), with a byte-level BPE trained here too. Built from ``transformers.LlamaConfig``: nothing is
downloaded. The default size (1M parameters, 2,048 tokens) reaches a useful perplexity in a few CPU
minutes (../shared/LM-NOTES.md); the tokenised splits are cached beside the tokenizer.
"""

from __future__ import annotations

from infersearch.models.lm import lm_task, require_lm, token_splits
from infersearch.models.task import Task, TrainRecipe
from infersearch.models.text import cached_blocks, find_corpus, tokenizer


def llama(vocab: int, d_model: int, layers: int, heads: int, kv_heads: int, ff: int, context: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=d_model, intermediate_size=ff, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=context,
        tie_word_embeddings=True, attn_implementation="sdpa",
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


def task(
    cache_dir: str = "outputs/cache",
    corpus: str = "auto",
    vocab: int = 2048,
    d_model: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    ff: int = 384,
    block: int = 128,
    train_tokens: int = 600_000,
    eval_tokens: int = 32_768,
    epochs: int = 1,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
    recover_epochs: int = 1,
    recover_steps: int = 60,
) -> Task:
    require_lm()
    text = find_corpus(corpus)
    chars = train_tokens * 5  # a BPE of 2k tokens reads about 3-4 characters per token
    tok = tokenizer(text, vocab, chars, cache_dir)
    parts = cached_blocks(tok, text, block, train_tokens, eval_tokens, cache_dir)
    spec = {"zoo": "pydocs_llama", "corpus": text.name, "vocab": vocab, "d_model": d_model, "layers": layers,
            "heads": heads, "kv_heads": kv_heads, "ff": ff, "block": block, "seed": seed,
            "train_tokens": train_tokens, "eval_tokens": eval_tokens}  # fmt: skip
    return lm_task(
        "pydocs_llama",
        lambda: llama(tok.get_vocab_size(), d_model, layers, heads, kv_heads, ff, 4 * block),
        token_splits(parts["train"], parts["val"], parts["test"]),
        spec,
        TrainRecipe(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=0.01),
        recover_epochs=recover_epochs,
        recover_steps=recover_steps,
        tokenizer=tok,
    )
