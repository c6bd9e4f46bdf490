"""Serving on Triton Inference Server: the model's interface, the runtime adapter, the model
repository and the bundled server (docs/serving.md)."""
