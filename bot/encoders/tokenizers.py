"""Tokenizers for the CLIP family.

CLIP and LongCLIP use OpenAI's byte-level BPE. open_clip ships its vocabulary
file, so we can rebuild the exact 49,408-token vocab.json/merges.txt that Hub
checkpoints carry, without any download. SigLIP uses a sentencepiece model; the
zoo trains its own on the caption corpus.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
CLIP_VOCAB_SIZE = 49408
_N_MERGES = 49152 - 256 - 2


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for raw bytes used by byte-level BPE (GPT-2 / CLIP convention)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """Rebuild CLIP's vocab and merges from the BPE file bundled with open_clip."""
    import open_clip  # the vocabulary file ships inside the package

    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1 : _N_MERGES + 1]
    alphabet = _byte_alphabet()
    tokens = alphabet + [t + "</w>" for t in alphabet] + ["".join(m.split()) for m in merges]
    tokens += [CLIP_BOS, CLIP_EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert len(vocab) == CLIP_VOCAB_SIZE, len(vocab)
    return vocab, merges


def write_clip_tokenizer_files(directory: Path, *, max_length: int) -> None:
    """Write vocab.json, merges.txt and tokenizer_config.json as Hub CLIP repos carry them."""
    vocab, merges = clip_vocab_and_merges()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "bos_token": CLIP_BOS,
        "eos_token": CLIP_EOS,
        "pad_token": CLIP_EOS,
        "unk_token": CLIP_EOS,
        "do_lower_case": True,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def load_clip_tokenizer(directory: Path | None, *, max_length: int):
    """The repo's own vocab.json/merges.txt when present, else the bundled CLIP vocabulary."""
    from transformers import CLIPTokenizer

    if directory is not None and (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        merges = [m for m in (directory / "merges.txt").read_text(encoding="utf-8").split("\n")[1:] if m.strip()]
    else:
        vocab, merges = clip_vocab_and_merges()
    tokenizer = CLIPTokenizer(
        vocab=vocab, merges=[tuple(m.split()) for m in merges],
        bos_token=CLIP_BOS, eos_token=CLIP_EOS, pad_token=CLIP_EOS, unk_token=CLIP_EOS,
    )
    tokenizer.model_max_length = max_length
    return tokenizer


def train_sentencepiece(corpus: list[str], out_file: Path, *, vocab_size: int, seed: int = 0) -> Path:
    """Train a SigLIP-style sentencepiece model (</s> = pad = eos, <unk>) on a corpus."""
    import io

    import sentencepiece as spm

    out_file.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        byte_fallback=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        num_threads=1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    out_file.write_bytes(model.getvalue())
    return out_file


def load_siglip_tokenizer(spiece_model: Path, *, max_length: int):
    from transformers import SiglipTokenizer

    tokenizer = SiglipTokenizer(vocab_file=str(spiece_model), model_max_length=max_length)
    return tokenizer
