"""The search space of ``sweep.space``: validated against the settings model before any trial starts.

A dimension is one setting (a dotted key such as ``training.learning_rate``) and one
distribution: ``log_uniform: [lo, hi]``, ``uniform: [lo, hi]``, ``int: [lo, hi]`` or
``int: [lo, hi, step]``, ``log_int: [lo, hi]``, ``choice: [a, b, …]``. Every problem is
reported at once, in one line (exit 2).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from heimdall_cli.errors import ConfigError
from heimdall_cli.settings import Settings
from heimdall_cli.settings.models import walk

if TYPE_CHECKING:
    import optuna

KINDS = ("log_uniform", "uniform", "int", "log_int", "choice")
#: Sections a sweep may search; tracking, storage and the sweep itself are not hyperparameters.
SEARCHABLE = ("training", "data")
_NUMBER_KINDS = {"log_uniform", "uniform", "int", "log_int"}


@dataclass(frozen=True)
class Dimension:
    """One searched setting and its distribution."""

    key: str
    kind: str
    args: tuple[Any, ...]

    def suggest(self, trial: optuna.trial.Trial) -> Any:
        """Draw this dimension's value for ``trial`` (recorded in the study under ``key``)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.args))
        if self.kind in ("int", "log_int"):
            lo, hi, *rest = self.args
            return trial.suggest_int(self.key, int(lo), int(hi), step=int(rest[0]) if rest else 1,
                                     log=self.kind == "log_int")
        lo, hi = self.args
        return trial.suggest_float(self.key, float(lo), float(hi), log=self.kind == "log_uniform")

    def describe(self) -> str:
        return f"{self.kind} {list(self.args)}"


def parse_space(settings: Settings) -> list[Dimension]:
    """The validated dimensions of ``settings.sweep.space`` (ConfigError naming every problem)."""
    space = settings.sweep.space
    if not space:
        raise ConfigError("sweep.space is empty: nothing to search.",
                          "Add e.g. sweep.space: {training.learning_rate: {log_uniform: [1e-4, 1e-2]}} to the config.")
    leaves = {key for key, _, _ in walk(settings)}
    problems: list[str] = []
    dims: list[Dimension] = []
    for key, spec in space.items():
        problem = _check_key(key, leaves)
        if problem is None:
            dim, problem = _check_spec(key, spec, settings)
            if dim is not None:
                dims.append(dim)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError("Invalid sweep.space: " + "; ".join(problems),
                          "Each entry: SETTING: {log_uniform|uniform|int|log_int|choice: [...]}.")
    return dims


def _check_key(key: str, leaves: set[str]) -> str | None:
    section = key.split(".", 1)[0]
    if key in leaves and section in SEARCHABLE:
        return None
    if key in leaves:
        return f"{key}: {section}.* settings cannot be searched (only {', '.join(s + '.*' for s in SEARCHABLE)})"
    close = difflib.get_close_matches(key, sorted(leaves), n=1)
    return f"{key}: unknown setting" + (f" (did you mean {close[0]}?)" if close else "")


def _check_spec(key: str, spec: Any, settings: Settings) -> tuple[Dimension | None, str | None]:
    if not isinstance(spec, dict) or len(spec) != 1:
        return None, f"{key}: needs exactly one of {', '.join(KINDS)}"
    kind, args = next(iter(spec.items()))
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        return None, f"{key}: unknown distribution {kind!r}" + (f" (did you mean {close[0]}?)" if close else "")
    args = list(args) if isinstance(args, list | tuple) else [args]
    field_type = _field_type(settings, key)
    if kind == "choice":
        if not args:
            return None, f"{key}: choice needs at least one value"
        bad = [v for v in args if _invalid(settings, key, v)]
        if bad:
            return None, f"{key}: choice value {bad[0]!r} is not valid ({_invalid(settings, key, bad[0])})"
        return Dimension(key, kind, tuple(args)), None
    # numeric ranges
    if field_type not in (int, float):
        return None, f"{key}: {kind} needs a numeric setting; use choice: [...]"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in args):
        return None, f"{key}: {kind} bounds must be finite numbers, not {args!r}"
    if kind in ("int", "log_int"):
        if len(args) not in (2, 3) or (kind == "log_int" and len(args) != 2):
            return None, f"{key}: {kind} takes [lo, hi]" + (" or [lo, hi, step]" if kind == "int" else "")
        if any(float(v) != int(v) for v in args):
            return None, f"{key}: {kind} bounds must be integers, not {args!r}"
        if len(args) == 3 and int(args[2]) < 1:
            return None, f"{key}: int step must be at least 1, not {args[2]}"
    else:
        if field_type is int:
            return None, f"{key} is an integer setting; use int: [lo, hi(, step)]"
        if len(args) != 2:
            return None, f"{key}: {kind} takes [lo, hi]"
    lo, hi = args[0], args[1]
    if not lo < hi:
        return None, f"{key}: empty range [{lo}, {hi}] (lo must be below hi)"
    if kind.startswith("log") and lo <= 0:
        return None, f"{key}: {kind} needs lo > 0, not {lo}"
    for value in (lo, hi):
        why = _invalid(settings, key, value)
        if why:
            return None, f"{key}: bound {value!r} is not valid ({why})"
    return Dimension(key, kind, tuple(args)), None


def _field_type(settings: Settings, key: str) -> type | None:
    *path, name = key.split(".")
    node: BaseModel = settings
    for part in path:
        node = getattr(node, part)
    annotation = type(node).model_fields[name].annotation
    return annotation if annotation in (int, float, bool, str) else None


def _invalid(settings: Settings, key: str, value: Any) -> str | None:
    """Why the settings model refuses ``value`` at ``key`` (None: accepted)."""
    try:
        apply_values(settings, {key: value})
    except ConfigError as e:
        return e.message.split(": ", 2)[-1]
    return None


def apply_values(settings: Settings, values: dict[str, Any]) -> Settings:
    """``settings`` with ``values`` (dotted keys) put in, validated by the settings model."""
    data = settings.model_dump()
    for key, value in values.items():
        *path, name = key.split(".")
        node = data
        for part in path:
            node = node[part]
        node[name] = value
    try:
        updated = Settings.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"Invalid trial value: {loc}: {first['msg']}") from None
    updated._sources = {**settings.sources, **{k: "sweep trial" for k in values}}
    return updated
