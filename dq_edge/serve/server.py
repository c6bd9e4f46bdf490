"""Start the Triton Inference Server that ships inside the nvidia-pytriton wheel on a model repository.

PyTriton bundles `tritonserver` (2.51 in 0.7.0), its libraries and one Python backend stub per
Python version. Like PyTriton itself, a workspace gets a copy of the server tree with the stub of
this interpreter's version, and the server runs as a child process with:
- LD_LIBRARY_PATH: this interpreter's own lib folder (sysconfig LIBDIR) first, then the wheel's
  libraries. The stub links `libpython3.X.so`; without LIBDIR first it may load the system's
  libpython, whose older C code breaks on this interpreter's newer stdlib (a pyenv Python on
  Debian fails at model load with "'_thread.RLock' object has no attribute '_recursion_count'").
- DQ_EDGE_PYTHONPATH: this process's import path, which the repository's model.py puts first on
  the stub's sys.path (the stub ignores PYTHONPATH), so the stub imports the same dq_edge, numpy
  and onnxruntime as the command that started it.

Why not PyTriton's Python callables: in 0.7 an exception in a callable fails every request of
the dynamic batch with HTTP 500 and a traceback; a Python backend model answers each request on
its own (INVALID_ARG = HTTP 400 with a one-line reason), which is also what the stock Triton
container runs (dq-edge export-triton), so local serving and the container share one model.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dq_edge.errors import BackendUnavailableError, DQEdgeError

MIN_GLIBC = (2, 35)  # the nvidia-pytriton wheel is manylinux_2_35_x86_64


def platform_unsupported_reason() -> str | None:
    """Why the bundled Triton cannot run on this machine, or None."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"the bundled Triton server needs x86-64 Linux (this is {sys.platform} {platform.machine()})"
    libc, version = platform.libc_ver()
    try:
        parsed = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        parsed = ()
    if libc != "glibc" or parsed < MIN_GLIBC:
        return f"the bundled Triton server needs glibc >= 2.35 (this has {libc or 'no glibc'} {version})"
    return None


def pytriton_root() -> Path:
    """The installed `pytriton` package folder (raises when nvidia-pytriton is missing)."""
    reason = platform_unsupported_reason()
    if reason is not None:
        raise BackendUnavailableError(reason, "serve from an x86-64 Linux machine or the Triton container (docs/serving.md)")
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise BackendUnavailableError("nvidia-pytriton is not installed", "pip install 'dq-edge[serve]'")
    return Path(spec.origin).parent


@dataclass(frozen=True)
class Endpoints:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002

    def _url(self, port: int) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # where a local client connects
        return f"http://{host}:{port}"

    @property
    def http(self) -> str:
        return self._url(self.http_port)

    @property
    def grpc(self) -> str:
        return self._url(self.grpc_port).removeprefix("http://")

    @property
    def metrics(self) -> str:
        return self._url(self.metrics_port) + "/metrics"


def prepare_server(workspace: Path) -> Path:
    """Copy the bundled server tree into `workspace` with this Python's backend stub; returns
    the copy's root (bin/tritonserver, backends/)."""
    root = pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise BackendUnavailableError(
            f"nvidia-pytriton has no Python backend stub for Python {version}", "serve from Python 3.8 to 3.13"
        )
    target = workspace / "tritonserver"
    shutil.copytree(root / "tritonserver", target, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
    shutil.copy2(stub, target / "backends" / "python" / "triton_python_backend_stub")
    return target


def server_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    libs = pytriton_root().parent / "nvidia_pytriton.libs"
    own_lib = sysconfig.get_config_var("LIBDIR")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = []
    if own_lib and (Path(own_lib) / f"libpython{version}.so.1.0").exists():
        paths.append(own_lib)
    paths.append(str(libs))
    if env.get("LD_LIBRARY_PATH"):
        paths.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
    env["DQ_EDGE_PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def server_command(server: Path, repository: Path, endpoints: Endpoints, exit_timeout_s: int, verbose: bool) -> list[str]:
    return [
        str(server / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={server / 'backends'}",
        f"--http-address={endpoints.host}", f"--http-port={endpoints.http_port}",
        f"--grpc-address={endpoints.host}", f"--grpc-port={endpoints.grpc_port}",
        f"--metrics-address={endpoints.host}", f"--metrics-port={endpoints.metrics_port}",
        "--allow-gpu-metrics=false",
        f"--exit-timeout-secs={exit_timeout_s}",
        f"--log-info={'true' if verbose else 'false'}",
        "--disable-auto-complete-config",
    ]


class TritonProcess:
    """A `tritonserver` child process: start, wait until ready, stop gracefully."""

    def __init__(self, command: list[str], env: dict[str, str], endpoints: Endpoints):
        self.endpoints = endpoints
        # its own session: a terminal's Ctrl-C reaches only us, and we stop it exactly once
        self.process = subprocess.Popen(command, env=env, start_new_session=True)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoints.http + "/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise DQEdgeError(
                    f"the Triton server exited with code {code} while starting",
                    "read its log above (a port in use, or the model failed to load)",
                )
            if self.ready():
                return
            time.sleep(0.25)
        self.stop()
        raise DQEdgeError(f"the Triton server was not ready after {timeout_s:.0f} s", "rerun with --verbose to see its log")

    def stop(self) -> None:
        """Ask the server to finish in-flight requests and exit (SIGTERM)."""
        if self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> int:
        return self.process.wait()
