"""pytest.raises that matches the whole one-line message (message + hint) of a DQEdgeError."""

from __future__ import annotations

import contextlib
import re

import pytest


@contextlib.contextmanager
def raises_line(exc_type: type, pattern: str):
    with pytest.raises(exc_type) as info:
        yield info
    line = info.value.one_line()
    assert re.search(pattern, line), f"{pattern!r} not in {line!r}"
