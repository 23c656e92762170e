"""The deployable model's interface and its ONNX export with a parity check (torch and onnx; no MLflow)."""
