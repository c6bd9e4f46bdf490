"""Reading a JSON file a user hands us, with bounds checked before and while parsing.

Manifests and model configs are a few KB; a file far larger, bytes that are not UTF-8, nesting
deeper than any dq-edge file has, duplicate keys or NaN/Infinity constants are refused with a
typed error before anything acts on the content. Torch-free.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dq_edge.errors import ConfigError

MAX_JSON_BYTES = 8 << 20  # the largest config.json written here (training summary) is ~10 KB
MAX_JSON_DEPTH = 16  # dq-edge files nest at most 6 levels (manifest -> precisions -> graphs -> spec -> ...)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """Deepest nesting of arrays/objects, counted without parsing (strings removed first), so a
    `[[[[...` bomb is refused before json.loads recurses into it."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def read_json_bytes(path: Path, hint: str, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The file's bytes; its size is checked from the file system before reading."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path} is {size} bytes, more than the {max_bytes} a dq-edge JSON file may have", hint)
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)  # the file may grow between stat and read
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror or exc}", hint) from exc
    if len(data) > max_bytes:
        raise ConfigError(f"{path} is more than {max_bytes} bytes, more than a dq-edge JSON file may have", hint)
    return data


def parse_json_bytes(data: bytes, path: Path, hint: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start})", hint) from exc
    depth = json_depth(text)
    if depth > max_depth:
        raise ConfigError(f"{path} nests {depth} levels deep, more than the {max_depth} a dq-edge JSON file may have", hint)
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path} is not valid JSON: {exc}", hint) from exc
