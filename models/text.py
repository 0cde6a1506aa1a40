"""Text that ships with this machine, and a tokenizer trained on it here: nothing is downloaded.

The corpus is the reST sources of the Python documentation where Debian's ``python3.X-doc`` is
installed (English technical prose), else the standard library's own ``.py`` files (always there).
Files are split by a hash of their path, so a file's text lands in one split only and the splits do not
move when files are added. The tokenizer (byte-level BPE, ``tokenizers``) is trained on the training
split only and cached by the corpus's identity and its settings.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

SPLITS = ("train", "val", "test")
EOS = "<|endoftext|>"


@dataclass(frozen=True)
class Corpus:
    name: str  # what a trial's record says it was trained and evaluated on
    files: tuple[Path, ...]

    def split(self, name: str, max_chars: int) -> str:
        """The text of one split's files, joined with the end-of-text token, cut at ``max_chars``."""
        parts, size = [], 0
        for f in self.files:
            if _split_of(f) != name:
                continue
            text = f.read_text(encoding="utf-8", errors="replace")
            parts.append(text)
            size += len(text)
            if size >= max_chars:
                break
        return EOS.join(parts)[:max_chars]


def _split_of(path: Path) -> str:
    """90% train, 5% val, 5% test, by a hash of the file's name relative to the corpus root."""
    h = int(hashlib.sha256(path.name.encode() + str(path.parent.name).encode()).hexdigest()[:8], 16) % 100
    return "val" if h < 5 else "test" if h < 10 else "train"


def find_corpus(prefer: str = "auto") -> Corpus:
    """``auto``: the Python documentation's sources if installed, else the standard library's sources."""
    if prefer not in ("auto", "python-docs", "stdlib"):
        raise ValueError(f"corpus {prefer!r}: allowed auto, python-docs, stdlib")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    docs = sorted(Path("/usr/share/doc").glob(f"{version}*/html/_sources"))
    if prefer in ("auto", "python-docs") and docs:
        files = tuple(sorted(docs[0].rglob("*.txt")))
        if files:
            return Corpus(f"python-docs:{docs[0].parent.parent.name}", files)
    if prefer == "python-docs":
        raise ValueError(f"corpus python-docs: Debian's {version}-doc is not installed (apt install {version}-doc)")
    root = Path(sysconfig.get_paths()["stdlib"])
    files = tuple(
        sorted(p for p in root.rglob("*.py") if not {"test", "tests", "site-packages", "idlelib"} & set(p.parts))
    )
    return Corpus(f"stdlib:{version}", files)


def tokenizer(corpus: Corpus, vocab_size: int, max_chars: int, cache_dir: str | Path):
    """A byte-level BPE trained on the training split, cached as JSON under ``cache_dir/tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    key = hashlib.sha256(f"{corpus.name}|{len(corpus.files)}|{vocab_size}|{max_chars}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / "tokenizer" / f"{key}.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = corpus.split("train", max_chars)
    tok.train_from_iterator((text[i : i + 100_000] for i in range(0, len(text), 100_000)), trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tok.save(str(tmp))
    tmp.replace(path)  # atomic: concurrent trials never read half a file
    return tok


def blocks(tok, text: str, block: int, max_blocks: int) -> torch.Tensor:
    """Token ids of ``text`` cut into non-overlapping blocks of ``block`` tokens: ``[n, block]`` int64."""
    ids = tok.encode(text).ids
    n = min(len(ids) // block, max_blocks)
    if n == 0:
        raise ValueError(f"the text holds {len(ids)} tokens, fewer than one block of {block}")
    return torch.tensor(ids[: n * block], dtype=torch.long).view(n, block)


def cached_blocks(tok, corpus: Corpus, block: int, train_tokens: int, eval_tokens: int, cache_dir: str | Path):
    """``{"train", "val", "test"}`` token blocks, tokenised once and cached (``cache_dir/tokens``) by the corpus,
    the tokenizer, the block length and the sizes: every trial process loads them instead of tokenising again."""
    ident = f"{corpus.name}|{len(corpus.files)}|{tok.to_str()}|{block}|{train_tokens}|{eval_tokens}"
    path = Path(cache_dir) / "tokens" / f"{hashlib.sha256(ident.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    sizes = {"train": train_tokens, "val": eval_tokens, "test": eval_tokens}
    parts = {name: blocks(tok, corpus.split(name, n * 5), block, n // block) for name, n in sizes.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(parts, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # atomic: concurrent trials never read half a file
    return parts
