"""Typed errors. Library code raises these; only the CLI prints them and picks exit codes."""

from __future__ import annotations


class DQEdgeError(Exception):
    """An error a user can act on: `message` says what went wrong, `hint` what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UsageError(DQEdgeError):
    """Invalid flag combination or value (exit code 2)."""

    exit_code = 2


class ConfigError(DQEdgeError):
    """A config, YAML or manifest that is missing, malformed or contradicts itself."""


class CheckpointError(DQEdgeError):
    """A checkpoint or weights file that cannot be read or does not match the model."""


class InputError(DQEdgeError):
    """Bad user data: an image of the wrong size, an empty dataset, a class id out of range."""


class ArtifactMismatchError(DQEdgeError):
    """A stale or foreign artifact (sha256, version, GPU); the hint names the command to rerun."""


class BackendUnavailableError(DQEdgeError):
    """A requested backend (TensorRT, CUDA, ...) is not installed or has no device."""


class OutputError(DQEdgeError):
    """An output path that cannot be written (dq_edge.outputs)."""


class OutputOverlapError(OutputError):
    """The output is, contains or lies inside an input (exit code 2: choose another path)."""

    exit_code = 2


class OutputExistsError(OutputError):
    """The output exists (a file, or a non-empty folder and replacing was not asked for)."""

    exit_code = 2


class OutputNotOursError(OutputError):
    """Replacing was asked for, but the folder was not written by dq-edge (no marker)."""

    exit_code = 2


class OutputBusyError(OutputError):
    """Another dq-edge process holds the output's lock."""
