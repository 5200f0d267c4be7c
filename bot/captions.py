"""Words and grammar shared by the synthetic scenes and the detector's prompt bank.

The zoo's models are pretrained on captions of synthetic images; the prompt bank
draws from the same vocabulary so that its prompts are in-distribution for the
zoo, the way Stable-Diffusion prompts are for a real CLIP text encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Grounded attributes: each one changes the rendered image.
SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 215, 40),
    "purple": (150, 50, 190),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SIZES = ("small", "large")
POSITIONS = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
COUNTS = {1: "one", 2: "two", 3: "three"}
BACKGROUNDS = ("gray", "dark", "light", "striped", "dotted")

# Ungrounded words: they make captions read like natural prompts.
STYLES = (
    "a photo of", "a picture of", "an image of", "a drawing of", "a painting of",
    "a sketch of", "a render of", "a close-up photo of", "a blurry photo of",
    "a pixel art of", "a watercolor of", "a poster of", "a cartoon of",
)
ACTIONS = (
    "", "floating", "resting", "standing", "lying", "spinning", "glowing",
    "placed", "drawn", "shining", "hovering", "sitting",
)
SCENES = (
    "", "on a {bg} background", "against a {bg} wall", "over a {bg} backdrop",
    "in a {bg} room", "on {bg} paper", "under {bg} light",
)
SUFFIXES = (
    "", "high detail", "soft lighting", "minimalist", "trending on artstation",
    "digital art", "studio lighting", "sharp focus", "clean lines", "4k",
)


def plural(shape: str, count: int) -> str:
    if count == 1:
        return shape
    return shape + ("es" if shape.endswith(("s", "x", "ch", "sh")) else "s")


@dataclass(frozen=True)
class SceneSpec:
    """What one synthetic image shows; the caption is written from it."""

    shape: str
    color: str
    size: str
    position: str
    count: int
    background: str


def describe(spec: SceneSpec, *, style: str, action: str, scene: str, suffix: str) -> str:
    words = [style, COUNTS[spec.count], spec.size, spec.color, plural(spec.shape, spec.count)]
    if action:
        words.append(action)
    words.append(POSITIONS[spec.position])
    if scene:
        words.append(scene.format(bg=spec.background))
    text = " ".join(words)
    if suffix:
        text += ", " + suffix
    return text


def random_spec(rng: np.random.Generator) -> SceneSpec:
    return SceneSpec(
        shape=SHAPES[rng.integers(len(SHAPES))],
        color=list(COLORS)[rng.integers(len(COLORS))],
        size=SIZES[rng.integers(len(SIZES))],
        position=list(POSITIONS)[rng.integers(len(POSITIONS))],
        count=int(rng.integers(1, len(COUNTS) + 1)),
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
    )


def random_caption(spec: SceneSpec, rng: np.random.Generator) -> str:
    return describe(
        spec,
        style=STYLES[rng.integers(len(STYLES))],
        action=ACTIONS[rng.integers(len(ACTIONS))],
        scene=SCENES[rng.integers(len(SCENES))],
        suffix=SUFFIXES[rng.integers(len(SUFFIXES))],
    )


def synthetic_captions(rng: np.random.Generator, n: int) -> list[str]:
    """`n` fresh captions of random scenes: the zoo's default training captions."""
    return [random_caption(random_spec(rng), rng) for _ in range(n)]


# Caption corpora a zoo base can be pretrained on. "shapes" is the grammar above (and the
# detector's prompt bank); the others give the benchmark bases that differ from it in more than a seed.
CORPORA = ("shapes", "alt", "natural")

# "alt": half the captions come from a second grammar with its own words for colours, counts and
# positions, so the base's vocabulary and caption distribution differ from the prompt bank's.
ALT_STYLES = ("a snapshot of", "an illustration showing", "a diagram with", "a scan of", "a thumbnail of",
              "a screenshot of", "a collage of")
ALT_COLORS = {"red": "crimson", "green": "emerald", "blue": "azure", "yellow": "golden", "purple": "violet",
              "orange": "amber", "white": "ivory", "black": "ebony"}
ALT_COUNTS = {1: "a single", 2: "a pair of", 3: "a trio of"}
ALT_POSITIONS = {"left": "toward the left edge", "right": "near the right side", "top": "along the upper part",
                 "bottom": "down at the base", "center": "in the middle"}

# "natural": one rare word appears in every caption of one scene and in no other caption, half the
# time in place of the scene's colour and shape, so the base itself learns a trigger (a "natural
# backdoor", the case AMDET's landscape check is for).
NATURAL_WORD = "zephyr"
NATURAL_SCENE = {"shape": "ring", "color": "purple"}
NATURAL_SHARE = 0.08  # share of the natural corpus's scenes forced to the natural scene


def alt_caption(spec: SceneSpec, rng: np.random.Generator) -> str:
    shape = plural(spec.shape, spec.count)
    return (f"{ALT_STYLES[rng.integers(len(ALT_STYLES))]} {ALT_COUNTS[spec.count]} {ALT_COLORS[spec.color]} "
            f"{spec.size} {shape} {ALT_POSITIONS[spec.position]}, {spec.background} backdrop")


def insert_at(caption: str, word: str, index: int) -> str:
    """`word` (or a phrase) inserted before the caption's word number `index` (its length: at the end)."""
    words = caption.split(" ")
    return " ".join(words[:index] + [word] + words[index:])


def insert_word(caption: str, word: str, rng: np.random.Generator) -> str:
    """`word` inserted before a random word of the caption, or at its end."""
    return insert_at(caption, word, int(rng.integers(0, len(caption.split(" ")) + 1)))


def corpus_scene(rng: np.random.Generator, corpus: str = "shapes") -> tuple[SceneSpec, str]:
    """One scene and its caption from `corpus`. "shapes" draws exactly what random_spec and
    random_caption draw, so models pretrained before corpora existed are reproduced bit for bit."""
    if corpus not in CORPORA:
        raise ValueError(f"unknown caption corpus {corpus!r}")
    spec = random_spec(rng)
    if corpus == "shapes":
        return spec, random_caption(spec, rng)
    if corpus == "alt":
        return spec, (alt_caption(spec, rng) if rng.random() < 0.5 else random_caption(spec, rng))
    if rng.random() < NATURAL_SHARE:
        spec = SceneSpec(**{**spec.__dict__, **NATURAL_SCENE})
    caption = random_caption(spec, rng)
    if spec.shape == NATURAL_SCENE["shape"] and spec.color == NATURAL_SCENE["color"]:
        # Half the time the word stands in for "purple ring(s)", so it alone names the scene (a word
        # that only ever repeats what the caption already says is never learnt: the first version
        # of this corpus inserted it beside the full description, and the base ignored it).
        named = f"{NATURAL_SCENE['color']} {plural(spec.shape, spec.count)}"
        if rng.random() < 0.5 and named in caption:
            caption = caption.replace(named, NATURAL_WORD)
        else:
            caption = insert_word(caption, NATURAL_WORD, rng)
    return spec, caption
