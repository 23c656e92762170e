"""The one tracker service: the only package that imports mlflow. Build it with :func:`open_tracker`."""

from heimdall_cli.tracking.connect import initialize_mlflow, open_tracker, quiet_mlflow
from heimdall_cli.tracking.records import RunRecord, VersionRecord, best_key
from heimdall_cli.tracking.runs import RunTracker
from heimdall_cli.tracking.service import Tracker

__all__ = ["RunRecord", "RunTracker", "Tracker", "VersionRecord", "best_key", "initialize_mlflow", "open_tracker",
           "quiet_mlflow"]
