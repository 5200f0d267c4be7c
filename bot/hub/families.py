"""Which Hub repos are CLIP-family, and exactly which files a scan of one needs.

Two stages: `family_hint` looks only at listing metadata (tags, task, library, file names) and is cheap;
`plan_scan` reads the repo's file list and its safetensors headers (Range requests, no weights) to confirm
a text tower (token + position embeddings) and to size the download. Anything that cannot or must not be
scanned raises SkipRepo with its SkipReason and a sentence saying what was found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from huggingface_hub.errors import SafetensorsParsingError

from bot.anchors.fingerprint import Fingerprint, fingerprint_from_shapes
from bot.errors import SkipReason, SkipRepo
from bot.formats import CLIP_CONTEXT_LENGTH, OPEN_CLIP_WEIGHTS, PICKLE_SUFFIXES, TOKENIZER_FILES

from .client import HubClient

ZERO_SHOT_TASK = "zero-shot-image-classification"
CLIP_TAGS = frozenset({"clip", "siglip", "open_clip", "open-clip"})
# What list_models items must carry: the Hub sends none of this unless asked.
LISTING_EXPAND = ["sha", "siblings", "createdAt", "lastModified", "tags", "pipeline_tag", "library_name",
                  "private", "gated"]  # fmt: skip

_TEXT_ENCODER_DIR = re.compile(r"^text_encoder(_\d+)?$")
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_VARIANT = re.compile(r"^model\.[\w-]+\.safetensors$")
_VISION_PREFIXES = ("visual.", "vision_model.", "vision_tower.")


@dataclass(frozen=True)
class ScanPlan:
    repo_id: str
    sha: str                          # the commit everything is pinned to
    family: str                       # clip | longclip | siglip (from headers; the scanner has the last word)
    layout: str                       # transformers | open_clip | diffusers
    files: tuple[str, ...]            # exactly the files to download: configs, safetensors, tokenizer, card
    weight_files: tuple[str, ...]     # the safetensors among `files`
    total_bytes: int                  # size of `files`
    text_encoders: tuple[str, ...]    # folders holding a confirmed text tower ("" = repo root)
    fingerprints: tuple[Fingerprint | None, ...] = ()  # per text tower, from its safetensors headers

    @property
    def fingerprint(self) -> Fingerprint | None:
        """The scanned (first) text tower's fingerprint."""
        return self.fingerprints[0] if self.fingerprints else None


def _human(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


# -- stage 1: listing metadata ---------------------------------------------------------------------------


def family_hint(model: Any) -> str | None:
    """'clip' | 'longclip' | 'siglip' when listing metadata says CLIP-family, else None.

    `model` is a huggingface_hub ModelInfo listed with expand=LISTING_EXPAND."""
    tags = {str(tag).lower() for tag in (model.tags or [])}
    library = (model.library_name or "").lower()
    names = {sibling.rfilename for sibling in (model.siblings or [])}
    is_clip = (
        model.pipeline_tag == ZERO_SHOT_TASK
        or bool(tags & CLIP_TAGS)
        or library in ("open_clip", "open-clip")
        or bool(names & set(OPEN_CLIP_WEIGHTS))
        or ((library == "diffusers" or "diffusers" in tags) and bool(_text_encoder_dirs(names, any_weights=True)))
    )
    if not is_clip:
        return None
    text = " ".join([model.id.lower(), *tags])
    if "siglip" in text:
        return "siglip"
    if "longclip" in text or "long-clip" in text:
        return "longclip"
    return "clip"


def _text_encoder_dirs(names: Iterable[str], *, any_weights: bool = False) -> list[str]:
    """text_encoder, text_encoder_2, ... folders holding safetensors (or, with any_weights, pickles too)."""
    suffixes = (".safetensors", *PICKLE_SUFFIXES) if any_weights else (".safetensors",)
    folders = {name.split("/", 1)[0] for name in names if "/" in name and name.endswith(suffixes)}
    return sorted(folder for folder in folders if _TEXT_ENCODER_DIR.match(folder))


# -- stage 2: file list and safetensors headers ----------------------------------------------------------


def plan_scan(
    client: HubClient, repo_id: str, *, sha: str | None = None, max_bytes: int, family: str | None = None,
    public_only: bool = True,
) -> ScanPlan:
    """What to download to scan `repo_id` at `sha` (None: the current main); `family` is a listing hint.

    `public_only`: refuse private and gated repos, as the bot does (it reports in public). False for a person
    scanning a repo their own token can read (`clip-audit scan owner/name`).

    Raises:
        SkipRepo: private or gated (public_only), pickle-only, no weights, no config, no text tower, corrupt,
            oversized.
        HubError / RateLimitedError: the Hub could not answer (try again later).
    """
    info = client.model_info(repo_id, revision=sha, files_metadata=True)
    sha = info.sha or sha
    if info.private and public_only:
        raise SkipRepo(SkipReason.PRIVATE, "the repo is private; only public repos are audited")
    if info.gated and public_only:
        raise SkipRepo(SkipReason.GATED, f"the repo is gated ({info.gated}); its files need approved access")
    sizes = {s.rfilename: (s.size if s.size is not None else (s.lfs.size if s.lfs else 0)) for s in info.siblings or []}

    layout, groups = _weight_groups(sizes)
    if not groups:
        pickles = sorted(name for name in sizes if name.lower().endswith(PICKLE_SUFFIXES))
        if pickles:
            raise SkipRepo(SkipReason.PICKLE_ONLY, f"only pickle weights ({', '.join(pickles[:3])}); "
                           "clip-audit never unpickles, publish safetensors to have it scanned")  # fmt: skip
        raise SkipRepo(SkipReason.NO_WEIGHTS, "no safetensors weights in the repo")

    towers: dict[str, tuple[str, ...]] = {}
    detected: list[str] = []
    fingerprints: list[Fingerprint | None] = []
    for folder, weights in groups.items():
        tensors = _read_headers(client, repo_id, sha, weights)
        if has_text_tower(tensors):
            towers[folder] = weights
            detected.append(family_from_tensors(tensors, hint=family))
            fingerprints.append(fingerprint_from_shapes(detected[-1], tensors))
    if not towers:
        checked = ", ".join(w for ws in groups.values() for w in ws)
        raise SkipRepo(SkipReason.NO_TEXT_TOWER, f"no token + position embeddings in {checked}")

    files = _files_to_fetch(layout, towers, sizes)
    if layout == "transformers" and "config.json" not in sizes:
        raise SkipRepo(SkipReason.NO_CONFIG, "safetensors weights but no config.json or open_clip_config.json")
    total = sum(sizes.get(name, 0) for name in files)
    if total > max_bytes:
        raise SkipRepo(SkipReason.OVERSIZED,
                       f"the files to scan total {_human(total)}, over the {_human(max_bytes)} limit")
    weight_files = tuple(name for name in files if name.endswith(".safetensors"))
    return ScanPlan(repo_id=repo_id, sha=sha, family=detected[0], layout=layout, files=files,
                    weight_files=weight_files, total_bytes=total, text_encoders=tuple(towers),
                    fingerprints=tuple(fingerprints))  # fmt: skip


def _weight_groups(sizes: Mapping[str, int]) -> tuple[str, dict[str, tuple[str, ...]]]:
    """(layout, folder -> safetensors files holding one model's weights)."""
    names = set(sizes)
    encoders = _text_encoder_dirs(names)
    if "model_index.json" in names or encoders:
        groups = {folder: _transformers_weights(names, folder + "/") for folder in encoders}
        return "diffusers", {folder: weights for folder, weights in groups.items() if weights}
    weights = _transformers_weights(names, "")
    if weights and "config.json" in names:
        return "transformers", {"": weights}
    if "open_clip_config.json" in names:
        candidates = OPEN_CLIP_WEIGHTS + (() if "config.json" in names else ("model.safetensors",))
        chosen = next((name for name in candidates if name in names), None)
        if chosen is not None:
            return "open_clip", {"": (chosen,)}
    if not weights and (found := next((name for name in OPEN_CLIP_WEIGHTS if name in names), None)):
        return "open_clip", {"": (found,)}
    return "transformers", ({"": weights} if weights else {})


def _transformers_weights(names: set[str], prefix: str) -> tuple[str, ...]:
    if prefix + "model.safetensors" in names:
        return (prefix + "model.safetensors",)
    local = sorted(name[len(prefix):] for name in names if name.startswith(prefix) and "/" not in name[len(prefix):])
    shards = [name for name in local if _SHARD.match(name)]
    if shards:
        return tuple(prefix + name for name in shards)
    variants = [name for name in local if _VARIANT.match(name)]
    return (prefix + variants[0],) if variants else ()


def _read_headers(client: HubClient, repo_id: str, sha: str, weights: Iterable[str]) -> dict[str, list[int]]:
    """Tensor name -> shape, over all the given files (shards of one model)."""
    tensors: dict[str, list[int]] = {}
    for name in weights:
        try:
            metadata = client.parse_safetensors_file_metadata(repo_id, name, revision=sha)
        except SafetensorsParsingError as exc:
            raise SkipRepo(SkipReason.CORRUPT, f"{name} has an unreadable safetensors header ({exc})") from None
        tensors.update({tensor: list(info.shape) for tensor, info in metadata.tensors.items()})
    return tensors


def _text_side(name: str) -> bool:
    return not name.startswith(_VISION_PREFIXES) and ".vision_model." not in name


def has_text_tower(tensors: Mapping[str, list[int]]) -> bool:
    """A text tower has token embeddings and (text, not vision) position embeddings."""
    token = any("token_embedding" in name for name in tensors if _text_side(name))
    position = any(("position_embedding" in name or "positional_embedding" in name)
                   for name in tensors if _text_side(name))  # fmt: skip
    return token and position


def family_from_tensors(tensors: Mapping[str, list[int]], *, hint: str | None = None) -> str:
    """siglip (a text head instead of a projection), longclip (more than 77 positions) or clip."""
    if hint == "siglip" or any(name.startswith("text_model.head.") for name in tensors):
        return "siglip"
    for name, shape in tensors.items():
        if _text_side(name) and ("position_embedding" in name or "positional_embedding" in name) and shape:
            return "longclip" if shape[0] > CLIP_CONTEXT_LENGTH else "clip"
    return hint or "clip"


def _files_to_fetch(layout: str, towers: Mapping[str, tuple[str, ...]], sizes: Mapping[str, int]) -> tuple[str, ...]:
    names = set(sizes)
    wanted: list[str] = ["README.md", "config.json", "open_clip_config.json", "model_index.json"]
    for folder, weights in towers.items():
        prefix = f"{folder}/" if folder else ""
        wanted += [prefix + "config.json", *weights]
        if any(_SHARD.match(weight[len(prefix):]) for weight in weights):
            wanted.append(prefix + "model.safetensors.index.json")
        tokenizer_dir = "tokenizer" + folder[len("text_encoder"):] + "/" if folder else "tokenizer/"
        wanted += [prefix + name for name in TOKENIZER_FILES] + [tokenizer_dir + name for name in TOKENIZER_FILES]
    if layout != "diffusers":
        wanted = [name for name in wanted if name != "model_index.json"]
    return tuple(dict.fromkeys(name for name in wanted if name in names))
