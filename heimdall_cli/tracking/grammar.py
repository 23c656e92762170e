"""MLflow's run-search grammar, read without importing MLflow (the fast query path).

Covers what heimdall's commands and their users write: ``metrics``/``params``/``tags``
comparisons and the run attributes ``run_id``, ``run_name``, ``status``, ``user_id``,
``artifact_uri``, ``start_time``, ``end_time``, joined by ``and``. Anything else (datasets,
``IS NULL``, a clause this parser does not know, or a malformed one) raises
:class:`Unsupported`: the caller then asks MLflow itself, whose answer and error message
are the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["metric", "param", "tag", "attribute"]

_KINDS: dict[str, Kind] = {
    "metric": "metric", "metrics": "metric",
    "param": "param", "params": "param", "parameter": "param", "parameters": "param",
    "tag": "tag", "tags": "tag",
    "attribute": "attribute", "attributes": "attribute", "attr": "attribute", "run": "attribute",
}
STRING_ATTRIBUTES = {"run_id", "run_name", "status", "user_id", "artifact_uri"}
NUMERIC_ATTRIBUTES = {"start_time", "end_time"}
_ALIASES = {"created": "start_time", "Created": "start_time"}
_NUMERIC_OPS = {"=", "!=", "<", "<=", ">", ">="}
_STRING_OPS = {"=", "!=", "LIKE", "ILIKE"}
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<ident>[A-Za-z_]+)\.(?:`(?P<bq>[^`]+)`|"(?P<dq>[^"]+)"|(?P<bare>[A-Za-z0-9_\-./:]+))
    | (?P<op>!=|<=|>=|=|<|>|(?i:not\s+in)\b|(?i:ilike|like|in)\b)
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | '(?P<sq>(?:[^'\\]|\\.)*)'|"(?P<dstr>(?:[^"\\]|\\.)*)"
    | (?P<list>\((?:\s*(?:'[^']*'|"[^"]*")\s*,?)*\))
    | (?P<and>(?i:and)\b)
    )""", re.VERBOSE)


class Unsupported(Exception):
    """The fast path does not handle this filter or order clause; ask MLflow."""


@dataclass(frozen=True)
class Clause:
    """One ``kind.key op value`` comparison."""

    kind: Kind
    key: str
    op: str
    value: float | str | tuple[str, ...]


@dataclass(frozen=True)
class Order:
    """One ``kind.key ASC|DESC`` order clause."""

    kind: Kind
    key: str
    ascending: bool


def _entity(ident: str, key: str) -> tuple[Kind, str]:
    kind = _KINDS.get(ident.lower())
    if kind is None:
        raise Unsupported(ident)
    if kind == "attribute":
        key = _ALIASES.get(key, key)
        if key not in STRING_ATTRIBUTES | NUMERIC_ATTRIBUTES:
            raise Unsupported(key)
    return kind, key


def parse_filter(text: str | None) -> list[Clause]:
    """The clauses of an MLflow run filter (``[]`` for none); :class:`Unsupported` if not handled here."""
    if not text or not text.strip():
        return []
    tokens = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(text[pos:])
        tokens.append(m)
        pos = m.end()
    clauses: list[Clause] = []
    for i in range(0, len(tokens), 4):
        part = tokens[i:i + 3]
        if len(part) != 3 or not part[0]["ident"] or not part[1]["op"]:
            raise Unsupported(text)
        if i + 3 < len(tokens) and not tokens[i + 3]["and"]:
            raise Unsupported(text)
        if i + 3 == len(tokens) - 1:  # a trailing "and"
            raise Unsupported(text)
        head, op_tok, value_tok = part
        kind, key = _entity(head["ident"], head["bq"] or head["dq"] or head["bare"])
        op = " ".join(op_tok["op"].upper().split())
        clauses.append(Clause(kind, key, op, _value(kind, key, op, value_tok)))
    return clauses


def _value(kind: Kind, key: str, op: str, tok: re.Match[str]) -> float | str | tuple[str, ...]:
    numeric = kind == "metric" or (kind == "attribute" and key in NUMERIC_ATTRIBUTES)
    if numeric:
        if op not in _NUMERIC_OPS or tok["num"] is None:
            raise Unsupported(op)
        return float(tok["num"]) if kind == "metric" else int(float(tok["num"]))
    if op in ("IN", "NOT IN"):
        if key != "run_id" or tok["list"] is None:  # MLflow: lists for run_id only
            raise Unsupported(op)
        return tuple(a or b for a, b in re.findall(r"'([^']*)'|\"([^\"]*)\"", tok["list"]))
    if op not in _STRING_OPS:
        raise Unsupported(op)
    raw = tok["sq"] if tok["sq"] is not None else tok["dstr"]
    if raw is None or "\\" in raw:
        raise Unsupported(op)
    return raw


_ORDER = re.compile(r"""\s*(?P<ident>[A-Za-z_]+)\.(?:`(?P<bq>[^`]+)`|"(?P<dq>[^"]+)"|(?P<bare>[A-Za-z0-9_\-./:]+))
                        (?:\s+(?P<dir>(?i:asc|desc)))?\s*$""", re.VERBOSE)


def parse_order(clause: str) -> Order:
    """One ``--order-by`` clause; :class:`Unsupported` if not handled here."""
    m = _ORDER.match(clause)
    if not m:
        raise Unsupported(clause)
    kind, key = _entity(m["ident"], m["bq"] or m["dq"] or m["bare"])
    return Order(kind, key, (m["dir"] or "asc").lower() == "asc")
