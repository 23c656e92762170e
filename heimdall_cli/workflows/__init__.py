"""Compositions of tracking with training, data and export (ONNX export, verify): no Typer, no printing."""
