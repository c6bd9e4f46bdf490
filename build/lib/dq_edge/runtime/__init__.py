"""Torch-free runtime: one autoregressive loop shared by every backend (never imports torch)."""
