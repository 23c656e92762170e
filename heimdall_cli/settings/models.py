"""The settings model: one pydantic-settings class with nested sections.

Each section is a plain ``BaseModel`` whose fields carry ``Field(description=…)``; the
descriptions serve ``--help``, ``heimdall config show --explain`` and docs/reference/configuration.md.
Resolving values from flags, environment, ``.env`` and a config file is
:func:`heimdall_cli.settings.load_settings`'s job (:mod:`heimdall_cli.settings.resolve`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from heimdall_cli.settings.services import StorageSettings, TrackingSettings, move_password
from heimdall_cli.settings.world import FeatureSettings, Section, WorldSettings

ENV_PREFIX = "HEIMDALL_"


class TrainingSettings(Section):
    """Model and optimisation. Defaults are the production values."""

    backbone: str = Field("convnext_large", description="timm model name (CONVNEXT_LARGE also works).")
    pretrained: bool = Field(True, description="Start from pretrained weights.")
    pretrained_path: Path | None = Field(None, description="Local pretrained weights file (offline boxes).")
    freeze_backbone: bool = Field(False, description="Train only the head.")
    head_width: int = Field(256, ge=8, description="Width of the network's head (its receiver side network is "
                            "half as wide).")
    mixture_components: int = Field(
        64, ge=0, description="The output is a mixture of this many Gaussians anchored over the training labels' "
        "area (k-means); 0: one Gaussian.",
    )
    receiver_dropout: float = Field(0.1, ge=0, lt=1, description="Share of receivers hidden at random from each "
                                    "training sample (a model that copes with absent receivers).")
    ensemble: int = Field(1, ge=1, le=16, description="Networks in a deep ensemble: independently initialised, "
                          "trained side by side on the same batches, each by its own loss; the prediction is their "
                          "mean and σ their combined spread. Costs this many times the compute of one.")
    architecture: Literal["slots", "set"] = Field(
        "slots", description="slots: one backbone image channel per station of the training data (the better and "
        "faster model on a fixed network: docs/development/benchmarks.md); set: the receivers as a set, each with its "
        "features and "
        "position (any number, moving receivers, stations it has not seen; the backbone encodes each receiver's "
        "spectrogram).",
    )
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay.")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="Share of steps spent in linear warmup.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient-norm clipping (0 disables).")
    batch_size: int = Field(32, ge=1, description="Samples per batch and device.")
    epochs: int = Field(100, ge=1, description="Maximum number of epochs.")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps (-1: no limit).")
    early_stopping_patience: int = Field(10, ge=0, description="Epochs without improvement of the monitored "
                                         "metric (0 disables).")
    save_top_k: int = Field(3, ge=0, description="Checkpoints kept by the monitored metric, besides the last.")
    checkpoint_every_s: float = Field(900.0, ge=0, description="Also save a checkpoint this often in seconds of "
                                      "training, mid-epoch too, so a kill loses at most this much (0 disables).")
    checkpoint_every_n_steps: int = Field(0, ge=0, description="Also save a checkpoint every N optimizer steps "
                                          "(0 disables).")
    monitor: Literal["val/loss", "val/error_m_mean", "val/error_m_p50"] = Field(
        "val/loss", description="What picks the best checkpoint (the one tested and logged as the model) and stops "
        "early: the validation loss, or the mean or median error (σ is calibrated after training either way).",
    )
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
    compile: bool = Field(
        False, description="Run the backbone through torch.compile (same weights and checkpoints; the first "
        "steps wait for the compiler, minutes on a CPU). Pays off on a GPU for long runs: bench/bench_compile.py.",
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

    @property
    def device_spec(self) -> str | int | list[int]:
        """``devices`` as Lightning takes it: "auto", a count, or a list of device indices."""
        if self.devices == "auto":
            return "auto"
        if "," in self.devices:
            return [int(v) for v in self.devices.split(",") if v]
        return int(self.devices)


class DataSettings(Section):
    """Where samples come from and how they are split."""

    source: str = Field("synthetic", description="synthetic, a dataset folder, or s3://BUCKET/PREFIX.")
    samples: int = Field(20000, ge=10, description="Samples generated in memory for source=synthetic.")
    synth_workers: int = Field(0, ge=0, description="Processes that generate synthetic samples (0: one per CPU; "
                               "the samples are the same whatever the count).")
    seed: int = Field(0, ge=0, description="Seed of the synthetic world and of the splits.")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of samples for validation.")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of samples for the test split.")
    split: Literal["random", "spatial"] = Field(
        "random", description="random: samples drawn at random; spatial: whole square cells of the area (side "
        "split_cell_m, by the transmitter's position) go to validation or test, so the model is judged on places it "
        "has never seen.",
    )
    split_cell_m: float = Field(250.0, gt=0, description="Side of the cells of a spatial split (metres).")
    world: WorldSettings = Field(default_factory=WorldSettings, description="Synthetic world parameters.")
    features: FeatureSettings = Field(default_factory=FeatureSettings,
                                      description="The IQ feature extractor (recorded and synthetic data alike).")


class SweepSettings(Section):
    """Hyperparameter sweeps (heimdall sweep): the search space, the objective and the study's storage."""

    space: dict[str, dict[str, list[Any]]] = Field(
        default_factory=dict,
        description="Search space: setting -> {log_uniform: [lo, hi]} | {uniform: [lo, hi]} | "
        "{int: [lo, hi(, step)]} | {choice: [a, b, …]}, e.g. training.learning_rate: {log_uniform: [1e-4, 1e-2]}.",
    )
    metric: str = Field("best/val_loss", min_length=1,
                        description="Objective: a per-epoch validation metric (val/…) or its best/… summary.")
    direction: Literal["min", "max"] = Field("min", description="Minimise or maximise the objective.")
    trials: int = Field(20, ge=1, description="Finished trials (complete or pruned) the study stops at.")
    pruner: Literal["none", "median", "hyperband"] = Field(
        "median", description="Stop unpromising trials early from their per-epoch validation metric.")
    pruner_startup_trials: int = Field(2, ge=0, description="Trials that finish before the median pruner prunes.")
    pruner_warmup_epochs: int = Field(0, ge=0, description="Epochs of a trial that are never pruned.")
    sampler_seed: int | None = Field(None, ge=0, description="Seed of the sampler (TPE); unset: random.")
    storage: str | None = Field(
        None, description="Optuna storage URL (postgresql+psycopg://… or sqlite:///FILE). Default: schema "
        "heimdall_optuna in the PostgreSQL tracking database, or a SQLite file beside the embedded mlflow.db; "
        "an http tracking server needs it. A password in the URL is moved to sweep.storage_password.",
    )
    storage_password: SecretStr | None = Field(None, description="Password for the sweep storage database.")
    heartbeat_s: int = Field(30, ge=1, description="Workers record a heartbeat this often while a trial runs.")
    stale_after_s: int = Field(
        120, ge=2, description="A running trial without a heartbeat for this long is failed (its worker died) "
        "and its parameters are tried again.",
    )
    evaluate: bool = Field(False, description="Test every trial and log its model, as heimdall train does.")
    plots_interval_s: float = Field(
        60.0, ge=0, description="The parent run's Optuna plots are refreshed at most this often (and at the end).")

    @model_validator(mode="before")
    @classmethod
    def _split_password(cls, data: Any) -> Any:
        return move_password(data, "storage", "storage_password")


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
    sweep: SweepSettings = Field(default_factory=SweepSettings, description="Hyperparameter sweeps.")

    # Where each value came from (dotted key -> "flag", "file PATH", …); set by load_settings.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Settings(**values)`` validates ``values`` over the defaults and reads nothing else.

        The layers (flags, environment, .env, config file) are resolved in one place:
        :func:`heimdall_cli.settings.load_settings`.
        """
        return (init_settings,)

    @property
    def sources(self) -> dict[str, str]:
        """Where each value came from; keys missing here are defaults."""
        return dict(self._sources)

    @property
    def spool_dir(self) -> Path:
        """The local spool for offline runs and long outages (the one place this path is decided)."""
        return Path(self.tracking.spool_dir or Path(self.training.output_dir) / "spool")


def _secret_keys(model_cls: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, info in model_cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _secret_keys(annotation, f"{prefix}{name}.")
        elif "SecretStr" in str(annotation):
            keys.add(f"{prefix}{name}")
    return keys


def walk(model: BaseModel, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, description) of every leaf field of ``model``."""
    out = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.extend(walk(value, f"{key}."))
        else:
            out.append((key, value, info.description or ""))
    return out


#: Dotted keys of every credential field (never shown, never logged as params).
SECRET_KEYS = _secret_keys(Settings)
