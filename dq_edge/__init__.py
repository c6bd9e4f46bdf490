"""dq-edge: dynamic vector quantization image generation from PyTorch to edge GPUs and CPUs."""

__version__ = "0.1.0"
# Bumped when a saved artifact (model folder, export manifest, engine manifest) changes meaning.
FORMAT_VERSION = 1
