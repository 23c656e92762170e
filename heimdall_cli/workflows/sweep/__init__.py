"""``heimdall sweep``: Optuna studies whose trials are ``heimdall train`` runs (children of one parent run).

The study lives in Optuna's RDB storage next to the tracking store
(:mod:`~heimdall_cli.workflows.sweep.storage`); workers on any number of boxes ask it
for trials (:mod:`~heimdall_cli.workflows.sweep.worker`); each trial is one
``prepare`` + ``run`` through the same trainer factory and tracker as ``heimdall train``
(:mod:`~heimdall_cli.workflows.sweep.trial`).
"""

from heimdall_cli.workflows.sweep.report import StudyView, TrialRow, best_of, describe_study
from heimdall_cli.workflows.sweep.space import Dimension, parse_space
from heimdall_cli.workflows.sweep.storage import resolve_storage
from heimdall_cli.workflows.sweep.trial import TrialOutcome
from heimdall_cli.workflows.sweep.worker import SweepReport, start, study_flags, work

__all__ = ["Dimension", "StudyView", "SweepReport", "TrialOutcome", "TrialRow", "best_of", "describe_study",
           "parse_space", "resolve_storage", "start", "study_flags", "work"]
