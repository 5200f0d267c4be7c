"""Facts about CLIP-family checkpoints on disk and on the Hub: one home for the names every layer shares."""

from __future__ import annotations

# The text-tower families the detector knows.
FAMILIES = ("clip", "longclip", "siglip")
# The on-disk layouts we read and write.
FORMATS = (
    "transformers-clip", "transformers-clip-text", "transformers-clip-text-projection",
    "transformers-siglip", "transformers-siglip-text", "open_clip", "diffusers",
)
# CLIP's position count: a CLIP-style tower with more positions is a LongCLIP.
CLIP_CONTEXT_LENGTH = 77
CLIP_EOS_ID = 49407
# No public CLIP-family text tower reaches this in any dimension (vocabulary 250k, width 1,152, 27 layers,
# 512 positions); a config beyond it is refused before anything is built from it.
MAX_TOWER_DIMENSION = 1 << 18
# Weight files that are pickles: never loaded, only named in the refusal.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# open_clip's safetensors weight file names, newest first.
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors")
# Tokenizer files a scan needs beside the weights (spiece.model is sentencepiece, not a pickle).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", "spiece.model")  # fmt: skip
