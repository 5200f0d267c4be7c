"""Shared test helpers: the standard Hub emulator (its users and tokens), tiny CLIP-family safetensors files
and repo layouts. The `hub` fixture in conftest.py starts the standard emulator through start_hub; a test that
needs other options (webhooks, page sizes, a second emulator) calls start_hub itself with overrides.

Import this module before huggingface_hub is imported anywhere else in the test process: the client reads
HF_HUB_DISABLE_XET once, at import time. conftest.py imports it first, so every test module gets this.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from hub_emulator import EmulatorConfig, EmulatorHandle, start_in_thread  # noqa: E402

# The emulator's users, one token each: "<who>-token". Every test that talks to the standard emulator uses these.
BOT_TOKEN = "bot-token"
BOT_USER = "auditbot"
OWNER_TOKEN = "owner-token"  # owns the acme/* repos most tests create
OWNER_USER = "acme"
TOKENS = {
    BOT_TOKEN: BOT_USER,
    OWNER_TOKEN: OWNER_USER,
    "eve-token": "eve",  # a bystander: not the owner, not the bot
    "alice-token": "alice",
    "mallory-token": "mallory",
}

# The emulator's admin routes always need a token; the standard emulator gets this one, sent in ADMIN_HEADERS.
ADMIN_TOKEN = "admin-token"
ADMIN_HEADERS = {"X-Emulator-Admin-Token": ADMIN_TOKEN}

CLIP_CONFIG = json.dumps({"model_type": "clip", "architectures": ["CLIPModel"]}).encode()
VOCAB = json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2}).encode()
MERGES = b"#version: 0.2\n"


def isolate_client(tmp_path: Path, monkeypatch) -> None:
    """A test's own HF_HOME, no token from the environment, and a cwd without a clip-audit.toml
    (load_settings reads ./clip-audit.toml when there is one)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now (for a server a test starts)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_hub(data_dir: Path, **overrides: object) -> EmulatorHandle:
    """The one place that builds the standard emulator: TOKENS and ADMIN_TOKEN, plus any EmulatorConfig overrides
    (admin_token=None: the emulator generates one, handle.admin_token). Call .stop()."""
    options = {"tokens": TOKENS, "admin_token": ADMIN_TOKEN, **overrides}
    return start_in_thread(EmulatorConfig(data_dir=data_dir, **options))  # type: ignore[arg-type]


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], *, fill: float = 0.0) -> Path:
    import torch  # here, not at import time: conftest.py imports this module for every test
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: torch.full(shape, fill) for name, shape in shapes.items()}, str(path))
    return path


def transformers_clip_shapes(*, vocab: int = 16, width: int = 8, positions: int = 77) -> dict[str, tuple[int, ...]]:
    return {
        "text_model.embeddings.token_embedding.weight": (vocab, width),
        "text_model.embeddings.position_embedding.weight": (positions, width),
        "text_model.final_layer_norm.weight": (width,),
        "vision_model.embeddings.position_embedding.weight": (5, width),
        "text_projection.weight": (width, width),
    }


def open_clip_shapes(*, width: int = 8) -> dict[str, tuple[int, ...]]:
    return {
        "token_embedding.weight": (16, width),
        "positional_embedding": (77, width),
        "visual.positional_embedding": (5, width),
        "text_projection": (width, width),
    }


def vision_only_shapes(*, width: int = 8) -> dict[str, tuple[int, ...]]:
    # Position embeddings, but only on the vision side: no text tower to audit.
    return {
        "vision_model.embeddings.position_embedding.weight": (5, width),
        "vision_model.embeddings.patch_embedding.weight": (width, 3, 2, 2),
    }


def clip_repo_files(tmp: Path, *, fill: float = 0.0, shapes: dict[str, tuple[int, ...]] | None = None) -> dict:
    """A transformers CLIP repo, plus a pickle copy of the weights that must never be fetched."""
    weights = write_safetensors(tmp / f"clip-{fill}.safetensors", shapes or transformers_clip_shapes(), fill=fill)
    return {
        "config.json": CLIP_CONFIG,
        "model.safetensors": weights,
        "pytorch_model.bin": b"pickle bytes we never download",
        "vocab.json": VOCAB,
        "merges.txt": MERGES,
        "preprocessor_config.json": b"{}",
    }


def open_clip_repo_files(tmp: Path) -> dict:
    weights = write_safetensors(tmp / "open_clip.safetensors", open_clip_shapes())
    return {
        "open_clip_config.json": json.dumps({"model_cfg": {"text_cfg": {"context_length": 77}}}).encode(),
        "open_clip_model.safetensors": weights,
        "open_clip_pytorch_model.bin": b"pickle",
        "tokenizer.json": b"{}",
    }


def diffusers_repo_files(tmp: Path) -> dict:
    encoder = write_safetensors(tmp / "te.safetensors", transformers_clip_shapes())
    vision = write_safetensors(tmp / "unet.safetensors", vision_only_shapes())
    index = {"text_encoder": ["transformers", "CLIPTextModel"], "unet": ["diffusers", "UNet2DConditionModel"]}
    return {
        "model_index.json": json.dumps(index).encode(),
        "text_encoder/config.json": b'{"model_type": "clip_text_model"}',
        "text_encoder/model.safetensors": encoder,
        "tokenizer/vocab.json": VOCAB,
        "tokenizer/merges.txt": MERGES,
        "unet/diffusion_pytorch_model.safetensors": vision,
    }
