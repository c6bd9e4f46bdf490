"""Where prepared datasets live: `$DQ_EDGE_DATA`, else `~/.cache/dq-edge/data`."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    env = os.environ.get("DQ_EDGE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dq-edge" / "data"


def dataset_dir(name: str) -> Path:
    return data_root() / name
