"""timm backbones: name resolution, construction with ``in_chans`` = receivers, checks."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from heimdall_cli.errors import ConfigError


def resolve_name(name: str) -> str:
    """The timm name for ``name``; the seed's upper-case names work (CONVNEXT_LARGE)."""
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
    try:
        return timm.create_model(timm_name, pretrained=True, **kwargs)
    except Exception as e:
        raise ConfigError(
            f"Pretrained weights for {timm_name} could not be loaded ({_first(e)}).",
            "Pass a local file with --pretrained-path FILE, or train from scratch with --no-pretrained.",
        ) from None


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
