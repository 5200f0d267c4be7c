"""What the Hub derives from a repo's files: LFS tracking, card metadata, config summary, parameter counts."""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Callable, Iterable

import yaml

from .records import Commit, FileEntry, Repo

# The suffixes the Hub's default .gitattributes routes to LFS (the subset that matters for models).
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".npz", ".npy",
    ".pkl", ".pickle", ".gguf", ".tflite", ".ot", ".joblib", ".model", ".zip", ".tar", ".gz", ".7z",
)  # fmt: skip
LFS_MIN_SIZE = 10 * 1024 * 1024
DEFAULT_GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)
SAFETENSORS_MAX_HEADER = 25_000_000
_CONFIG_KEYS = ("architectures", "model_type")


def is_lfs_path(path: str, size: int) -> bool:
    return path.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def split_front_matter(readme: str) -> tuple[dict[str, Any] | None, str]:
    """(metadata, body) of a model card; metadata is None when there is no valid YAML block."""
    if not readme.startswith("---"):
        return None, readme
    lines = readme.splitlines(keepends=True)
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            try:
                meta = yaml.safe_load("".join(lines[1:index]))
            except yaml.YAMLError:
                return None, readme
            body = "".join(lines[index + 1 :])
            return (meta if isinstance(meta, dict) else None), body
    return None, readme


def render_readme(card_data: dict[str, Any], body: str) -> bytes:
    front = yaml.safe_dump(card_data, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{body}".encode()


def config_summary(raw: bytes) -> dict[str, Any] | None:
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(config, dict):
        return None
    return {key: config[key] for key in _CONFIG_KEYS if key in config}


def safetensors_parameter_counts(headers: Iterable[bytes]) -> dict[str, Any] | None:
    """{"parameters": {dtype: count}, "total": count} summed over the given safetensors files; None if none parse."""
    per_dtype: dict[str, int] = {}
    parsed_any = False
    for head in headers:
        tensors = _parse_safetensors_header(head)
        if tensors is None:
            continue
        parsed_any = True
        for name, info in tensors.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            shape = info.get("shape")
            dtype = info.get("dtype")
            if isinstance(dtype, str) and isinstance(shape, list) and all(isinstance(d, int) for d in shape):
                per_dtype[dtype] = per_dtype.get(dtype, 0) + math.prod(shape)
    if not parsed_any:
        return None
    return {"parameters": per_dtype, "total": sum(per_dtype.values())}


def _parse_safetensors_header(head: bytes) -> dict[str, Any] | None:
    if len(head) < 8:
        return None
    (length,) = struct.unpack("<Q", head[:8])
    if length > SAFETENSORS_MAX_HEADER or len(head) < 8 + length:
        return None
    try:
        tensors = json.loads(head[8 : 8 + length])
    except (ValueError, UnicodeDecodeError):
        return None
    return tensors if isinstance(tensors, dict) else None


def derive_commit_facts(commit: Commit, read_prefix: Callable[[FileEntry, int], bytes]) -> None:
    """Fills card_data, config and safetensors on a new commit; `read_prefix(entry, n)` reads a blob's first n bytes."""
    readme = commit.files.get("README.md")
    commit.card_data = None
    if readme is not None:
        text = read_prefix(readme, readme.size).decode("utf-8", errors="replace")
        commit.card_data = split_front_matter(text)[0]
    config = commit.files.get("config.json")
    commit.config = config_summary(read_prefix(config, config.size)) if config is not None else None
    headers = []
    for path, entry in sorted(commit.files.items()):
        if path.endswith(".safetensors") and entry.size >= 8:
            (length,) = struct.unpack("<Q", read_prefix(entry, 8))
            if length <= SAFETENSORS_MAX_HEADER:
                headers.append(read_prefix(entry, 8 + length))
    commit.safetensors = safetensors_parameter_counts(headers)


def card_value(commit: Commit, key: str) -> Any:
    return (commit.card_data or {}).get(key)


def effective_library_name(repo: Repo, commit: Commit) -> str | None:
    return repo.library_name or card_value(commit, "library_name")


def effective_pipeline_tag(repo: Repo, commit: Commit) -> str | None:
    return repo.pipeline_tag or card_value(commit, "pipeline_tag")


def computed_tags(repo: Repo, commit: Commit) -> list[str]:
    """The tag list the Hub shows: library, explicit and card tags, formats, task, base model, license."""
    tags: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value and value not in tags:
            tags.append(value)

    add(effective_library_name(repo, commit))
    for tag in repo.tags:
        add(tag)
    card_tags = card_value(commit, "tags")
    for tag in card_tags if isinstance(card_tags, list) else [card_tags]:
        add(tag)
    if any(path.endswith(".safetensors") for path in commit.files):
        add("safetensors")
    add((commit.config or {}).get("model_type"))
    add(effective_pipeline_tag(repo, commit))
    base_models = card_value(commit, "base_model")
    for base in base_models if isinstance(base_models, list) else [base_models]:
        if isinstance(base, str):
            add(f"base_model:{base}")
            add(f"base_model:finetune:{base}")
    add(f"license:{card_value(commit, 'license')}" if card_value(commit, "license") else None)
    add("region:us")
    return tags
