"""Device selection and mixed precision: CUDA when present, CPU otherwise."""

from __future__ import annotations

import contextlib

import torch

from bot.errors import DeviceError


def select_device(choice: str = "auto") -> torch.device:
    """Map "auto" | "cpu" | "cuda" (or "cuda:N") to a torch device, refusing unusable choices."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda was requested but no CUDA device is available; use --device cpu or auto")
        return torch.device(choice)
    raise DeviceError(f"unknown device {choice!r}: expected auto, cpu or cuda")


def autocast(device: torch.device, *, enabled: bool = True):
    """bf16 autocast on CUDA (the inversion is robust to it; the landscape opts out); full precision
    on CPU, where bf16 matmuls are slower than fp32 on most hosts, and wherever `enabled` is False."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
