"""heimdall: train RF transmitter-localization models and manage them in MLflow."""

__version__ = "0.1.0"
