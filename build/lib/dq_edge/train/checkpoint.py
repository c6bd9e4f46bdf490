"""Training checkpoints: `state.safetensors` (every tensor) + `state.json` (everything else). No pickle.

Layout under `<out>/checkpoints/`:
    step-000200/state.safetensors, step-000200/state.json     one complete checkpoint
    latest                                                     name of the newest complete one
A checkpoint folder is built in a temp sibling and renamed into place (atomic_dir); `latest` is
rewritten atomically only after that, and older checkpoints are pruned only after that. A process
killed (or a disk filling up) mid-save therefore leaves the previous checkpoint as `latest`.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dq_edge.atomic import atomic_dir, write_text
from dq_edge.errors import CheckpointError

LATEST = "latest"
TENSORS = "state.safetensors"
META = "state.json"


# ----- optimizer state <-> (tensors, json) -----
def optimizer_state(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def load_optimizer_state(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    head = prefix + "."
    for name, value in tensors.items():
        if name.startswith(head):
            idx, key = name[len(head):].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for idx, kv in meta["plain"].items():
        state.setdefault(int(idx), {}).update(kv)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"optimizer state does not fit the model: {exc}", "resume with the same model config") from exc


# ----- RNG states -----
def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return {"rng.torch": torch.get_rng_state()}, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


# ----- folders -----
def checkpoint_root(out: Path) -> Path:
    return Path(out) / "checkpoints"


def save_checkpoint(out: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict, keep: int = 2) -> Path:
    root = checkpoint_root(out)
    name = f"step-{step:07d}"
    remove_stale_temporaries(root)
    with atomic_dir(root / name, overwrite=True) as tmp:
        save_file(tensors, str(tmp / TENSORS))
        (tmp / META).write_text(json.dumps({**meta, "step": step}, indent=1) + "\n")
    write_text(root / LATEST, name + "\n")
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return root / name


def remove_stale_temporaries(root: Path) -> None:
    """Temp folders/files of a save that was killed (SIGKILL skips every cleanup). Rank 0 is the
    only writer, so any temporary present before a save is stale."""
    if not root.is_dir():
        return
    for p in root.glob(".*.tmp"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def latest_checkpoint(out: Path) -> Path | None:
    root = checkpoint_root(out)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        meta = json.loads((path / META).read_text())
        tensors = load_file(str(path / TENSORS))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}", "delete it and point `latest` at an older one, or start without --resume") from exc
    return tensors, meta


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = prefix + "."
    return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
