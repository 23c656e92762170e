"""The model registry: read versions and aliases, register, promote and roll back."""

from heimdall_cli.tracking.registry.promote import Promotion, promote, rollback
from heimdall_cli.tracking.registry.register import Registration, register
from heimdall_cli.tracking.registry.versions import (
    STAGE_ALIASES,
    STAGES,
    VersionRow,
    derived_stage,
    get_version,
    list_versions,
    model_aliases,
    model_location,
    parse_stage,
    resolve_version,
    version_by_alias,
)

__all__ = ["STAGES", "STAGE_ALIASES", "Promotion", "Registration", "VersionRow", "derived_stage", "get_version",
           "list_versions", "model_aliases", "model_location", "parse_stage", "promote", "register", "resolve_version",
           "rollback", "version_by_alias"]
