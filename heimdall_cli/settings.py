"""Layered configuration: one pydantic-settings model with nested sections.

Precedence, highest first (DESIGN.md): command-line flags > environment
(``HEIMDALL_…`` with ``__`` nesting, then the standard ``MLFLOW_TRACKING_URI``,
``MLFLOW_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``) >
``.env`` > ``--config FILE`` (YAML or JSON) > defaults.

:func:`load_settings` is the one way to resolve settings; it also records where
every value came from, for ``heimdall config show --explain``.
"""

from __future__ import annotations

import json
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from heimdall_cli.errors import ConfigError
from heimdall_cli.redact import MASK, register_secret

ENV_PREFIX = "HEIMDALL_"

#: Standard variables other tools already use, mapped onto our fields.
STANDARD_ENV: dict[str, tuple[str, str]] = {
    "MLFLOW_TRACKING_URI": ("tracking", "uri"),
    "MLFLOW_S3_ENDPOINT_URL": ("storage", "s3_endpoint_url"),
    "AWS_ACCESS_KEY_ID": ("storage", "access_key_id"),
    "AWS_SECRET_ACCESS_KEY": ("storage", "secret_access_key"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrackingSettings(_Section):
    """Where runs, metrics and the model registry live."""

    uri: str = Field(
        "sqlite:///mlflow.db",
        description="MLflow tracking URI: sqlite:///FILE, postgresql+psycopg://USER@HOST/DB or "
        "http(s)://SERVER. A password in the URI is moved to tracking.password.",
    )
    password: SecretStr | None = Field(None, description="Password for the tracking database.")
    experiment: str = Field("heimdall-localization", min_length=1, description="MLflow experiment name.")
    model_name: str = Field("heimdall-localization", min_length=1, description="Registered model name.")
    onnx_model_name: str = Field(
        "heimdall-localization-onnx", min_length=1, description="Registered model name for ONNX exports."
    )
    enabled: bool = Field(True, description="Track to MLflow at all (false: train without tracking).")
    query_timeout_s: float = Field(
        5.0, gt=0, le=600, description="Queries and probes give up after this many seconds on a dead backend."
    )
    register_timeout_s: float = Field(
        300.0, gt=0, description="How long model registration waits for the version to become READY."
    )
    outage_bound_s: float = Field(
        600.0, ge=0, description="A run whose backend stays unreachable longer than this continues in the local "
        "spool (sync it later with heimdall runs sync).",
    )
    offline: bool = Field(False, description="Track to the local spool only (heimdall train --offline).")
    spool_dir: Path | None = Field(None, description="The local spool (default: OUTPUT_DIR/spool).")
    queue_memory_points: int = Field(
        200_000, ge=1000, description="Metric points kept in memory during an outage; more spill to disk."
    )
    flush_interval_s: float = Field(
        1.0, gt=0, le=60, description="Metrics are sent in batches at most this many seconds apart."
    )

    @model_validator(mode="before")
    @classmethod
    def _split_password(cls, data: Any) -> Any:
        """Keep credentials out of the URI so it can be shown and logged."""
        if isinstance(data, dict) and isinstance(data.get("uri"), str):
            uri, password = split_uri_password(data["uri"])
            if password is not None:
                data = {**data, "uri": uri}
                data.setdefault("password", password)
        return data

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a malformed port
        except ValueError as e:
            raise ValueError(f"not a valid URI ({e})") from None
        if not parts.scheme:
            raise ValueError("needs a scheme: sqlite:///FILE, postgresql+psycopg://…, http(s)://…")
        return value

    @property
    def backend(self) -> Literal["sqlite", "postgresql", "http", "other"]:
        """The kind of tracking backend the URI names."""
        scheme = urlsplit(self.uri).scheme.split("+")[0]
        if scheme in ("sqlite", "postgresql", "postgres"):
            return "postgresql" if scheme.startswith("postgres") else "sqlite"
        return "http" if scheme in ("http", "https") else "other"

    def connection_uri(self) -> str:
        """The URI with the password put back. Give it to MLflow only; never print it."""
        if self.password is None:
            return self.uri
        parts = urlsplit(self.uri)
        from urllib.parse import quote

        user, _, host = parts.netloc.rpartition("@")
        netloc = f"{user}:{quote(self.password.get_secret_value(), safe='')}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))


class StorageSettings(_Section):
    """Where artifacts (checkpoints, models, plots) are stored."""

    artifact_root: str = Field(
        "mlartifacts",
        description="Artifact location for new experiments: a local folder or s3://BUCKET[/PREFIX]. "
        "Ignored for an http tracking server, which stores artifacts itself.",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, e.g. http://minio:9000 (MinIO).")
    access_key_id: SecretStr | None = Field(None, description="S3 access key id.")
    secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    region: str = Field("us-east-1", description="S3 region.")
    addressing_style: Literal["path", "virtual", "auto"] = Field(
        "path", description="S3 addressing style; MinIO needs path."
    )

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError as e:
            raise ValueError(f"not a valid URL ({e})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://HOST[:PORT], e.g. http://minio:9000")
        return value

    @model_validator(mode="after")
    def _check_root(self) -> StorageSettings:
        root = self.artifact_root
        if root.count("://") > 1:
            raise ValueError(f"artifact_root {root!r} has more than one scheme (write s3://BUCKET/PREFIX)")
        if root.startswith("s3://") and not root[len("s3://") :].strip("/"):
            raise ValueError("artifact_root s3:// needs a bucket name: s3://BUCKET[/PREFIX]")
        return self

    @property
    def is_s3(self) -> bool:
        """True when artifacts go to S3 (or MinIO)."""
        return self.artifact_root.startswith("s3://")

    @property
    def bucket(self) -> str | None:
        """The S3 bucket of ``artifact_root``, if any."""
        return urlsplit(self.artifact_root).netloc if self.is_s3 else None


class TrainingSettings(_Section):
    """Model and optimisation. Defaults are the seed's production values."""

    backbone: str = Field("convnext_large", description="timm model name (CONVNEXT_LARGE also works).")
    pretrained: bool = Field(True, description="Start from pretrained weights.")
    pretrained_path: Path | None = Field(None, description="Local pretrained weights file (offline boxes).")
    freeze_backbone: bool = Field(False, description="Train only the head.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay.")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="Share of steps spent in linear warmup.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient-norm clipping (0 disables).")
    batch_size: int = Field(32, ge=1, description="Samples per batch and device.")
    epochs: int = Field(100, ge=1, description="Maximum number of epochs.")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps (-1: no limit).")
    early_stopping_patience: int = Field(10, ge=0, description="Epochs without val/loss improvement (0 disables).")
    save_top_k: int = Field(3, ge=0, description="Checkpoints kept by val/loss, besides the last.")
    precision: str = Field("32-true", description="Lightning precision, e.g. 32-true, bf16-mixed, 16-mixed.")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu, …")
    devices: str = Field("auto", description="Devices per node: auto, a count, or a list like 0,1.")
    num_nodes: int = Field(1, ge=1, description="Number of nodes.")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, ddp_spawn, fsdp, …")
    seed: int = Field(42, ge=0, description="Random seed for weights and batch order.")
    output_dir: Path = Field(Path("outputs"), description="Checkpoints and local outputs go here.")
    run_name: str | None = Field(None, description="MLflow run name (default: generated).")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    cpu_threads: int = Field(
        0, ge=0, description="torch threads when training on the CPU (0: torch's default). On a shared or "
        "small machine 1 avoids threads spinning against each other.",
    )
    progress: Literal["auto", "rich", "plain", "none"] = Field(
        "auto", description="Progress display: auto (rich on a terminal, plain otherwise), rich, plain, none."
    )
    progress_interval_s: float = Field(30.0, gt=0, description="Plain progress prints a line this often.")

    @field_validator("devices")
    @classmethod
    def _check_devices(cls, value: str) -> str:
        v = str(value).strip()
        if v in ("auto", "-1") or re.fullmatch(r"\d+|\d+(,\d+)+,?", v):
            return v
        raise ValueError("devices must be auto, -1, a count like 2, or a list like 0,1")


class WorldSettings(_Section):
    """Parameters of the synthetic RF world (written into every dataset manifest)."""

    frequency_mhz: float = Field(145.0, gt=0, description="Carrier frequency.")
    path_loss_exponent: float = Field(2.5, ge=1.5, le=5, description="Log-distance path-loss exponent.")
    shadowing_db: float = Field(6.0, ge=0, description="Log-normal shadowing σ per link (dB).")
    tx_power_dbm: tuple[float, float] = Field((30.0, 40.0), description="Transmit power range (dBm).")
    noise_floor_dbm: float = Field(-120.0, description="Noise floor in a 12.5 kHz channel (dBm).")
    lat_range: tuple[float, float] = Field((44.0, 46.0), description="Transmitter latitude range.")
    lon_range: tuple[float, float] = Field((7.0, 10.0), description="Transmitter longitude range.")
    n_mels: int = Field(32, ge=4, description="Mel bands per spectrogram.")
    n_frames: int = Field(32, ge=4, description="Time frames per spectrogram.")


class DataSettings(_Section):
    """Where samples come from and how they are split."""

    source: str = Field("synthetic", description="synthetic, a dataset folder, or s3://BUCKET/PREFIX.")
    samples: int = Field(20000, ge=10, description="Samples generated in memory for source=synthetic.")
    seed: int = Field(0, ge=0, description="Seed of the synthetic world and of the splits.")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of samples for validation.")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of samples for the test split.")
    world: WorldSettings = Field(default_factory=WorldSettings, description="Synthetic world parameters.")


# The config file of the current resolution; read by ConfigFileSource.
_config_file: ContextVar[Path | None] = ContextVar("heimdall_config_file", default=None)


class Settings(BaseSettings):
    """Everything heimdall can be told. See ``heimdall config show --explain``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        # .env is shared with docker compose: only HEIMDALL_* entries are ours (typos among them are errors).
        dotenv_filtering="match_prefix",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    tracking: TrackingSettings = Field(default_factory=TrackingSettings, description="MLflow tracking.")
    storage: StorageSettings = Field(default_factory=StorageSettings, description="Artifact storage.")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="Training.")
    data: DataSettings = Field(default_factory=DataSettings, description="Data.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest precedence first: flags, environment, .env, config file."""
        return (
            init_settings,
            env_settings,
            StandardEnvSource(settings_cls),
            dotenv_settings,
            StandardEnvSource(settings_cls, dotenv=True),
            ConfigFileSource(settings_cls, _config_file.get()),
        )


class StandardEnvSource(PydanticBaseSettingsSource):
    """``MLFLOW_TRACKING_URI`` and friends, from the environment or from ``.env``."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: bool = False) -> None:
        super().__init__(settings_cls)
        self.dotenv = dotenv

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def _values(self) -> dict[str, str]:
        if not self.dotenv:
            return dict(os.environ)
        env_file = Path(self.config.get("env_file") or ".env")
        if not env_file.is_file():
            return {}
        from dotenv import dotenv_values

        return {k: v for k, v in dotenv_values(env_file).items() if v is not None}

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        values = self._values()
        for var, (section, key) in STANDARD_ENV.items():
            if values.get(var):
                out.setdefault(section, {})[key] = values[var]
        return out


class ConfigFileSource(PydanticBaseSettingsSource):
    """A YAML or JSON file given with ``--config``."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_config_file(self.path) if self.path else {}


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file; syntax errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror}", "Check the --config path.") from e
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
            if context and start and mark and start.line != mark.line:
                # An unclosed bracket or quote is reported where the file ends: name where it began.
                problem += f" ({context} started at line {start.line + 1})"
            # from None: the parser's exception quotes the offending line, which may hold a credential.
            raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not {type(data).__name__}")
    _check_keys(data, path)
    return data


def _check_keys(data: dict[Any, Any], path: Path, prefix: str = "") -> None:
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {prefix}{key!r} is not a name (a {type(key).__name__}).")
        if isinstance(value, dict):
            _check_keys(value, path, f"{prefix}{key}.")


# --------------------------------------------------------------------------- resolution


@dataclass
class ResolvedSettings:
    """Settings plus the source of every value (dotted key -> 'default' | 'file PATH' | …)."""

    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)


def load_settings(
    config_file: Path | str | None = None,
    flags: dict[str, Any] | None = None,
    env_file: Path | str | None = ".env",
) -> Settings:
    """Resolve settings from all layers; see the module docstring for precedence."""
    return resolve_settings(config_file, flags, env_file).settings


def resolve_settings(
    config_file: Path | str | None = None,
    flags: dict[str, Any] | None = None,
    env_file: Path | str | None = ".env",
) -> ResolvedSettings:
    """Like :func:`load_settings`, also recording where each value came from."""
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        raise ConfigError(f"Config file {path} not found.", "Check the --config path.")
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    token = _config_file.set(path)
    try:
        env_path = Path(env_file) if env_file else None
        init = InitSettingsSource(Settings, init_kwargs=flags)
        env = EnvSettingsSource(Settings)
        dotenv = DotEnvSettingsSource(Settings, env_file=env_path)
        std_env, std_dotenv = StandardEnvSource(Settings), StandardEnvSource(Settings, dotenv=True)
        std_dotenv.config = {**std_dotenv.config, "env_file": env_path}
        layers = [
            (f"file {path}", ConfigFileSource(Settings, path)),
            (f"{env_path} (standard variable)", std_dotenv),
            (str(env_path), dotenv),
            ("environment (standard variable)", std_env),
            (f"environment ({ENV_PREFIX}…)", env),
            ("flag", init),
        ]
        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for label, source in layers:
            try:
                values = _plain(source())
            except ConfigError:
                raise
            except Exception as e:  # pydantic-settings parse errors (bad JSON in env, …)
                raise ConfigError(f"Cannot read settings from {label}: {e}") from e
            _deep_merge(merged, values)
            for key in _flatten_keys(values):
                sources[key] = _name_variable(label, key)
        try:
            settings = Settings.model_validate(merged)
        except ValidationError as e:
            raise ConfigError(_describe_validation_error(e, merged, sources)) from None
    finally:
        _config_file.reset(token)
    _register_secrets(settings)
    if sources.get("tracking.uri") and settings.tracking.password is not None:
        sources.setdefault("tracking.password", sources["tracking.uri"])
    return ResolvedSettings(settings, sources)


def _name_variable(label: str, key: str) -> str:
    """Name the variable in environment sources: ``environment (HEIMDALL_TRAINING__SEED)``."""
    if label.endswith("(standard variable)"):
        var = next((v for v, path in STANDARD_ENV.items() if ".".join(path) == key), None)
        return label.replace("standard variable", var) if var else label
    if label == f"environment ({ENV_PREFIX}…)":
        return f"environment ({ENV_PREFIX}{key.upper().replace('.', '__')})"
    return label


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["training.weight_decay=0.01", …]`` into a nested flags dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"Override {item!r} is not KEY=VALUE.", "Example: training.weight_decay=0.01")
        parts = key.split(".")
        if parts[0] not in Settings.model_fields:
            sections = ", ".join(Settings.model_fields)
            raise ConfigError(f"Override {key!r}: unknown section {parts[0]!r}.", f"Sections: {sections}.")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_scalar(value)
    return out


def _parse_scalar(value: str) -> Any:
    value = value.strip()
    if value.startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def set_flag(flags: dict[str, Any], dotted: str, value: Any) -> None:
    """Put ``value`` at ``dotted`` (e.g. ``training.epochs``) when it was given."""
    if value is None:
        return
    *path, last = dotted.split(".")
    node = flags
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def explain(resolved: ResolvedSettings) -> list[tuple[str, str, str, str]]:
    """Rows of (key, shown value, source, description) for every setting, secrets masked."""
    rows = []
    for key, value, description in _walk(resolved.settings):
        rows.append((key, _show(value), resolved.sources.get(key, "default"), description))
    return rows


def to_display_dict(settings: Settings) -> dict[str, Any]:
    """The resolved settings as plain JSON-able data, secrets masked."""
    data = settings.model_dump(mode="json")
    for key, value, _ in _walk(settings):
        if isinstance(value, SecretStr):
            node = data
            for part in key.split(".")[:-1]:
                node = node[part]
            node[key.split(".")[-1]] = MASK
    return data


def run_params(settings: Settings) -> dict[str, Any]:
    """Flattened settings that shape a run, for MLflow params. Secrets are left out."""
    params: dict[str, Any] = {}
    for key, value, _ in _walk(settings):
        if key in SECRET_KEYS or isinstance(value, SecretStr) or key in _NOT_PARAMS:
            continue
        params[key] = value
    return params


_NOT_PARAMS = {"tracking.query_timeout_s", "tracking.register_timeout_s", "training.progress",
               "training.progress_interval_s", "tracking.flush_interval_s"}


def _secret_keys(model_cls: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, info in model_cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _secret_keys(annotation, f"{prefix}{name}.")
        elif "SecretStr" in str(annotation):
            keys.add(f"{prefix}{name}")
    return keys


def _walk(model: BaseModel, prefix: str = "") -> list[tuple[str, Any, str]]:
    out = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.extend(_walk(value, f"{key}."))
        else:
            out.append((key, value, info.description or ""))
    return out


#: Dotted keys of every credential field (never shown, never logged as params).
SECRET_KEYS = _secret_keys(Settings)


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return MASK
    if value is None:
        return "—"
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _register_secrets(settings: Settings) -> None:
    for _, value, _ in _walk(settings):
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())


def split_uri_password(uri: str) -> tuple[str, str | None]:
    """Split ``scheme://user:pw@host/…`` into (``scheme://user@host/…``, ``pw``)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri, None
    if parts.password is None or "@" not in parts.netloc:
        return uri, None
    from urllib.parse import unquote

    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}")), unquote(parts.password)


def _plain(values: Any) -> dict[str, Any]:
    return values if isinstance(values, dict) else {}


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _flatten_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        if isinstance(value, dict):
            keys.extend(_flatten_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _describe_validation_error(error: ValidationError, merged: dict[str, Any], sources: dict[str, str]) -> str:
    problems = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not isinstance(p, int))
        value = _lookup(merged, loc)
        source = sources.get(loc) or _source_of_section(loc, sources)
        secret = loc in SECRET_KEYS or _SECRET_LIKE.search(loc.rsplit(".", 1)[-1]) is not None
        shown = MASK if secret and value is not None else repr(value)
        if item["type"] == "extra_forbidden":
            problems.append(f"{loc} = {shown} from {source}: unknown setting")
            continue
        problems.append(f"{loc or '(top level)'} = {shown} from {source}: {item['msg']}")
    return "Invalid configuration: " + "; ".join(problems)


# Names that look like a credential (a misspelt password too): their values are never shown.
_SECRET_LIKE = re.compile(r"pass|pasw|pwd|secret|key|token|cred|auth", re.IGNORECASE)


def _source_of_section(loc: str, sources: dict[str, str]) -> str:
    hits = {v for k, v in sources.items() if k.startswith(loc + ".") or loc.startswith(k + ".")}
    return " / ".join(sorted(hits)) or "default"


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split(".") if dotted else []:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def __getattr__(name: str) -> Any:
    """``from heimdall_cli.settings import settings``: the resolved settings (seed API)."""
    if name == "settings":
        return load_settings()
    raise AttributeError(name)
