"""Your own Hugging Face causal language model, from a local directory (``from_pretrained``: nothing is
downloaded), evaluated on text that ships with this machine (models/text.py) or on your own text files,
tokenised with the directory's own ``tokenizer.json``.

    infersearch -m model=hf_causal_lm model.path=/models/my-llama

The weights file's SHA-256 is the study's identity (a changed checkpoint is a new study); nothing is
trained. Pruning recovers on the training split (``recover.steps`` bounds it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from infersearch.models.lm import lm_task, require_lm, token_splits
from infersearch.models.task import Task, TrainRecipe
from infersearch.models.text import Corpus, cached_blocks, find_corpus

WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def _weights(path: Path) -> Path:
    for name in WEIGHTS:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} holds none of {', '.join(WEIGHTS)}: save the model with save_pretrained")


def _tokenizer(path: Path):
    from tokenizers import Tokenizer

    file = path / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(f"{path} has no tokenizer.json (a fast tokenizer's file, tokenizers' format)")
    return Tokenizer.from_file(str(file))


def task(
    path: str,
    text: str | None = None,
    corpus: str = "auto",
    block: int = 128,
    train_tokens: int = 200_000,
    eval_tokens: int = 32_768,
    batch_size: int = 8,
    recover_steps: int = 60,
    cache_dir: str = "outputs/cache",
) -> Task:
    """``text``: a folder of your own ``.txt``/``.md`` files (split 90/5/5 by file), else ``corpus``."""
    require_lm()
    from transformers import AutoModelForCausalLM

    folder = Path(path).expanduser()
    weights, tok = _weights(folder), _tokenizer(folder)
    source = find_corpus(corpus) if text is None else _own_text(Path(text))
    split = cached_blocks(tok, source, block, train_tokens, eval_tokens, cache_dir)
    key = hashlib.sha256(f"{source.name}|{len(source.files)}|{tok.to_str()}|{block}|{train_tokens}".encode())
    return lm_task(
        f"hf:{folder.name}",
        lambda: AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa"),
        token_splits(split["train"], split["val"], split["test"]),
        {"path": str(folder), "data": source.name, "text_key": key.hexdigest()[:16], "block": block},
        TrainRecipe(batch_size=batch_size),
        checkpoint=weights,
        checkpoint_loader="build",
        recover_epochs=1,
        recover_steps=recover_steps,
        tokenizer=tok,
    )


def _own_text(folder: Path) -> Corpus:
    files = tuple(sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".md", ".rst") and p.is_file()))
    if not files:
        raise FileNotFoundError(f"{folder} holds no .txt, .md or .rst files")
    return Corpus(f"text:{folder}", files)
