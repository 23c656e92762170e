"""timm backbones: name resolution, construction with ``in_chans`` = receivers, checks."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from heimdall_cli.errors import ConfigError


def resolve_name(name: str) -> str:
    """The timm name for ``name``; upper-case names work too (CONVNEXT_LARGE)."""
    import timm

    candidates = [name, name.lower(), name.lower().replace("-", "_")]
    for candidate in candidates:
        if timm.is_model(candidate):
            return candidate
    close = difflib.get_close_matches(name.lower(), timm.list_models(), n=5, cutoff=0.6)
    hint = f"Closest names: {', '.join(close)}." if close else "See timm.list_models() for valid names."
    raise ConfigError(f"Unknown backbone {name!r}.", hint)


def create_backbone(name: str, in_chans: int, *, pretrained: bool, pretrained_path: Path | None) -> Any:
    """A timm feature extractor (no classifier) taking ``in_chans`` input channels.

    Pretrained stems are adapted to ``in_chans`` by timm. Weights come from
    ``pretrained_path`` when given; a download that cannot happen fails in seconds
    with a message naming --pretrained-path and --no-pretrained: it never trains
    silently from random weights.
    """
    import timm

    timm_name = resolve_name(name)
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": in_chans}
    if not pretrained:
        return timm.create_model(timm_name, pretrained=False, **kwargs)
    if pretrained_path is not None:
        if not Path(pretrained_path).is_file():
            raise ConfigError(f"Pretrained weights file {pretrained_path} not found.", "Check --pretrained-path.")
        overlay = {"file": str(Path(pretrained_path).resolve())}
        try:
            return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except (RuntimeError, KeyError, ValueError) as e:
            raise ConfigError(f"Weights in {pretrained_path} do not fit {timm_name}: {_first(e)}") from None
    cached = _cached_weights(timm_name)
    if cached is not None:
        return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **kwargs)
    if not _hub_reachable():
        raise ConfigError(
            f"Pretrained weights for {timm_name} are not cached and the Hugging Face hub is unreachable.",
            "Pass a local file with --pretrained-path FILE, or train from scratch with --no-pretrained.",
        )
    try:
        return timm.create_model(timm_name, pretrained=True, **kwargs)
    except Exception as e:
        raise ConfigError(
            f"Pretrained weights for {timm_name} could not be loaded ({_first(e)}).",
            "Pass a local file with --pretrained-path FILE, or train from scratch with --no-pretrained.",
        ) from None


def weights_source(name: str, pretrained: bool, pretrained_path: Path | None) -> str:
    """Where the weights would come from; ConfigError when they cannot be had (verify's check)."""
    if not pretrained:
        return "random init (--no-pretrained)"
    if pretrained_path is not None:
        if not Path(pretrained_path).is_file():
            raise ConfigError(f"Pretrained weights file {pretrained_path} not found.",
                              "Fix --pretrained-path or use --no-pretrained.")
        return f"pretrained from {pretrained_path}"
    timm_name = resolve_name(name)
    cached = _cached_weights(timm_name)
    if cached:
        return f"pretrained from the Hugging Face cache ({cached})"
    if _hub_reachable():
        return "pretrained, downloaded from the Hugging Face hub at start"
    raise ConfigError(f"Pretrained weights for {timm_name} are not cached and the hub is unreachable.",
                      "Pass --pretrained-path FILE, or train from scratch with --no-pretrained.")


def _cached_weights(timm_name: str) -> str | None:
    """A weights file for ``timm_name`` already in the Hugging Face cache, if any."""
    import timm

    cfg = timm.models.get_pretrained_cfg(timm_name)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str):
            return path
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Can we open a connection to the hub? Offline boxes answer in milliseconds, not minutes."""
    import os
    import socket
    from urllib.parse import urlsplit

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def describe(name: str, in_chans: int) -> tuple[str, int]:
    """(timm name, parameter count) of a backbone, built on the meta device (no memory, fast)."""
    import torch

    timm_name = resolve_name(name)
    import timm

    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=in_chans)
    return timm_name, sum(p.numel() for p in model.parameters())


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
