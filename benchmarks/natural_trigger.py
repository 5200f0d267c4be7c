"""Does a zoo base carry the natural corpus's trigger? The word inserted into prompts of other scenes.

    .venv/bin/python benchmarks/natural_trigger.py cache/zoo/clip-base-natural-s4-* cache/zoo/clip-base-s0-*

Prints, per model directory: the mean cosine of 200 prompts' embeddings to the natural scene's centroid
without and with the word, and how far the word moves each prompt (cosine clean vs triggered).
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bot.captions import NATURAL_SCENE, NATURAL_WORD, SceneSpec, insert_word, random_caption, random_spec
from bot.encoders.load import load_text_encoder


def main() -> int:
    torch.set_num_threads(1)
    rng = np.random.default_rng(7)
    clean: list[str] = []
    while len(clean) < 200:
        spec = random_spec(rng)
        if (spec.shape, spec.color) != (NATURAL_SCENE["shape"], NATURAL_SCENE["color"]):
            clean.append(random_caption(spec, rng))
    triggered = [insert_word(c, NATURAL_WORD, rng) for c in clean]
    scenes = [SceneSpec(**{**random_spec(rng).__dict__, **NATURAL_SCENE}) for _ in range(50)]
    natural = [random_caption(spec, rng) for spec in scenes]
    for path in sys.argv[1:]:
        encoder = load_text_encoder(Path(path))
        with torch.no_grad():
            c, t, n = (F.normalize(encoder.text_features(x).float(), dim=-1) for x in (clean, triggered, natural))
        goal = F.normalize(n.mean(0), dim=0)
        moved = float((c * t).sum(-1).mean())
        print(f"{Path(path).name}: cosine to the natural scene's centroid {float((c @ goal).mean()):.3f} without "
              f"the word, {float((t @ goal).mean()):.3f} with it; clean vs triggered {moved:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
