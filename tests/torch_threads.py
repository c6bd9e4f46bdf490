"""A fixture for torch tests of tiny models: one intra-op thread. Tiny matmuls gain nothing from
threads, and on the shared 2-core machine oversubscribed threads made steps ~40x slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
