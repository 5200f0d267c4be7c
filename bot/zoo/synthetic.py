"""Captioned synthetic images: coloured shapes of given sizes, positions and counts.

Everything is drawn with numpy from a seeded generator, so a dataset is a pure
function of its seed.
"""

from __future__ import annotations

import numpy as np
import torch

from bot.captions import COLORS, SceneSpec, corpus_scene, random_caption, random_spec

IMAGE_SIZE = 32
_BG_RGB = {"gray": 128, "dark": 50, "light": 200}
_CENTERS = {"left": (16, 8), "right": (16, 24), "top": (8, 16), "bottom": (24, 16), "center": (16, 16)}
_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def _shape_mask(shape: str, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = _YY - cy, _XX - cx
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if shape == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.55)
    if shape == "cross":
        return ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r))
    if shape == "ring":
        d2 = dy * dy + dx * dx
        return (d2 <= r * r) & (d2 >= (r * 0.55) ** 2)
    if shape == "bar":
        return (np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r * 1.1)
    raise ValueError(f"unknown shape {shape!r}")


def render(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Render one scene as an HxWx3 uint8 image."""
    if spec.background in _BG_RGB:
        img = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), _BG_RGB[spec.background], np.float32)
    elif spec.background == "striped":
        img = np.where(((_YY // 3) % 2 == 0)[..., None], 90.0, 160.0) * np.ones(3, np.float32)
    else:  # dotted
        img = np.where(((_YY % 4 == 0) & (_XX % 4 == 0))[..., None], 200.0, 100.0) * np.ones(3, np.float32)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    r = 3.0 if spec.size == "small" else 6.0
    cy, cx = _CENTERS[spec.position]
    # Several objects are spread around the position's centre.
    offsets = {1: [(0, 0)], 2: [(-1, -1), (1, 1)], 3: [(-1, -1), (1, 1), (-1, 1)]}[spec.count]
    spread = 4.5 if spec.size == "small" else 5.0
    scale = 1.0 if spec.count == 1 else (0.7 if spec.size == "large" else 1.0)
    colour = np.array(COLORS[spec.color], np.float32)
    for oy, ox in offsets:
        jy, jx = rng.normal(0, 0.7, 2)
        mask = _shape_mask(spec.shape, cy + oy * spread + jy, cx + ox * spread + jx, r * scale)
        img[mask] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] normalised to roughly zero mean, unit scale."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.25


def sample_batch(rng: np.random.Generator, batch_size: int,
                 corpus: str = "shapes") -> tuple[torch.Tensor, list[str], list[SceneSpec]]:
    if corpus == "shapes":  # the draw order models were pretrained with before corpora existed
        specs = [random_spec(rng) for _ in range(batch_size)]
        images = np.stack([render(s, rng) for s in specs])
        captions = [random_caption(s, rng) for s in specs]
        return to_tensor(images), captions, specs
    scenes = [corpus_scene(rng, corpus) for _ in range(batch_size)]
    specs = [spec for spec, _ in scenes]
    images = np.stack([render(s, rng) for s in specs])
    return to_tensor(images), [caption for _, caption in scenes], specs
