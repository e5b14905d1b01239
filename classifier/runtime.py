"""Device choice and mixed precision, shared by training, embedding, evaluation and prediction."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} was requested but CUDA is not available here.")
    return resolved


def autocast(device: torch.device, enabled: bool = True):
    """bf16 (or fp16 where bf16 is missing) autocast on CUDA; plain fp32 on CPU."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=amp_dtype())
    return contextlib.nullcontext()


def amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
