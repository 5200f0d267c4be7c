"""The detector's prompt bank: thousands of distinct natural captions, fixed by a seed.

The reference uses 5,000 Stable-Diffusion art prompts; we generate ours from the
same vocabulary as the zoo's captions (subjects, attributes, actions, scenes,
styles) so they are in-distribution for the models we audit.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from bot.captions import random_caption, random_spec

DEFAULT_SIZE = 5000
DEFAULT_SEED = 1234


@lru_cache(maxsize=4)
def prompt_bank(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> tuple[str, ...]:
    """`size` distinct captions in a deterministic order."""
    rng = np.random.default_rng(seed)
    seen: dict[str, None] = {}
    while len(seen) < size:
        seen.setdefault(random_caption(random_spec(rng), rng), None)
    return tuple(seen)


def split(prompts: tuple[str, ...], *, n_train: int, n_test: int) -> tuple[list[str], list[str]]:
    """First n_train prompts for inversion, the next n_test held out for the checks."""
    if n_train + n_test > len(prompts):
        raise ValueError(f"prompt bank has {len(prompts)} prompts, need {n_train + n_test}")
    return list(prompts[:n_train]), list(prompts[n_train:n_train + n_test])
