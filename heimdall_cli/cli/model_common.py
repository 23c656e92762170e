"""The ``model`` group's helpers: ``--tag KEY=VALUE`` parsing (register) and the promote / rollback report."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heimdall_cli.cli.output import Output
    from heimdall_cli.tracking.registry import Promotion


def parse_tags(items: list[str]) -> dict[str, str]:
    """``--tag KEY=VALUE`` items as a dict; ConfigError (exit 2) for one without ``=`` or a key."""
    from heimdall_cli.errors import ConfigError

    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--tag {item!r} is not KEY=VALUE.", "Example: --tag dataset=synthetic-v2")
        tags[key.strip()] = value
    return tags


def report_promotion(plan: Promotion, out: Output) -> None:
    """Print a promotion or rollback, done or (--dry-run) planned; ``-q`` prints the version."""
    data = {**asdict(plan), "model_uri": f"models:/{plan.name}/{plan.version}"}

    def human(console: Any) -> None:
        verb = "Would" if plan.dry_run else "Did"
        if plan.action == "rollback":
            console.print(f"{verb} roll back {plan.stage} of '{plan.name}': version {plan.previous_version} -> "
                          f"version {plan.version}")
        else:
            console.print(f"{verb} promote '{plan.name}' version {plan.version} to {plan.stage}"
                          + (f" (previous holder: version {plan.previous_version})" if plan.previous_version else ""))
        for a in plan.aliases_set:
            console.print(f"  alias {a} -> version {plan.version}")
        for a in plan.aliases_removed:
            console.print(f"  alias {a} removed from version {plan.version}")
        for other, stage in plan.demoted.items():
            console.print(f"  version {other}: stage -> {stage}")
        console.print("  tags: " + ", ".join(f"{k}={v}" for k, v in plan.tags.items()))
        if plan.requirement:
            console.print(f"  requirement {plan.requirement['condition']!r} met: {plan.requirement['values']}")
        if plan.dry_run:
            console.print("Dry run: nothing changed.")

    out.result(data, human=human, bare=str(plan.version))
