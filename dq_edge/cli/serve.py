"""`dq-edge serve`: Triton Inference Server (bundled with nvidia-pytriton) serving model `dq_edge`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

BackendOpt = typer.Option("auto", "--backend", help="auto | ort-cpu | ort-cuda | ort-trt | trt")
PrecisionOpt = typer.Option(None, "--precision", help="fp32 | fp16 | int8 (default: fp32 if exported).")
MaxBatchOpt = typer.Option(None, "--max-batch", help="Triton max_batch_size: rows one generation takes (default: the export's max batch).")
InstancesOpt = typer.Option(1, "--instances", help="Model instances (one process each).")
QueueDelayOpt = typer.Option(5000, "--queue-delay-us", help="How long the dynamic batcher waits to fill a batch (microseconds).")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads per instance (default: 1, see docs/runtime.md).")


def resolve_engine(engine: Optional[Path], precision: Optional[str]) -> Path:
    """An export/engine folder; a model folder (or none: the shipped model) is exported into the cache."""
    from dq_edge.cli.first_use_export import resolve_engine_folder

    return resolve_engine_folder(engine, precision)[0]


def serve_command(
    engine: Optional[Path] = typer.Option(None, "--engine", help="Export folder (ONNX), engine folder (TensorRT) or model folder. Default: the shipped model."),
    backend: str = BackendOpt,
    precision: Optional[str] = PrecisionOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes the server to the network)."),
    http_port: int = typer.Option(8000, "--http-port"),
    grpc_port: int = typer.Option(8001, "--grpc-port"),
    metrics_port: int = typer.Option(8002, "--metrics-port"),
    max_batch: Optional[int] = MaxBatchOpt,
    instances: int = InstancesOpt,
    queue_delay_us: int = QueueDelayOpt,
    threads: Optional[int] = ThreadsOpt,
    exit_timeout_s: int = typer.Option(60, "--exit-timeout", help="Seconds to finish in-flight requests on SIGINT/SIGTERM."),
    startup_timeout_s: float = typer.Option(300.0, "--startup-timeout", help="Seconds to wait for the server to be ready."),
    verbose: bool = typer.Option(False, "--verbose", help="Triton's info log too (default: warnings and errors)."),
) -> None:
    """Serve the model over HTTP and gRPC until SIGINT/SIGTERM (in-flight requests finish, exit 0)."""
    import shutil
    import signal
    import tempfile

    from dq_edge.errors import UsageError
    from dq_edge.serve.engine import describe
    from dq_edge.serve.protocol import MODEL_NAME, curl_line
    from dq_edge.serve.repository import RepositoryOptions, write_repository
    from dq_edge.serve.server import Endpoints, TritonProcess, prepare_server, server_command, server_environment

    ports = (http_port, grpc_port, metrics_port)
    if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
        raise UsageError(f"ports must be three different numbers in 1..65535, got {ports}")
    folder = resolve_engine(engine, precision)
    info = describe(folder, precision)
    options = RepositoryOptions(backend, precision, max_batch, instances, queue_delay_us, threads, link=True)
    endpoints = Endpoints(host, http_port, grpc_port, metrics_port)
    workspace = Path(tempfile.mkdtemp(prefix="dq-edge-serve-"))
    stopping = []
    try:
        server = prepare_server(workspace)
        repository = write_repository(workspace / "models", folder, info, options)
        process = TritonProcess(server_command(server, repository, endpoints, exit_timeout_s, verbose), server_environment(), endpoints)

        def _stop(signum, _frame):
            stopping.append(signum)
            process.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop)
        try:
            process.wait_ready(startup_timeout_s)
        except Exception:
            if stopping:  # stopped while starting: not an error
                process.wait()
                return
            raise
        typer.echo(
            f"serving model '{MODEL_NAME}' from {folder} ({info.precision}, {info.image_size}x{info.image_size}, "
            f"max batch {options.max_batch or info.max_batch}, {instances} instance(s))\n"
            f"  HTTP    {endpoints.http}   (ready: {endpoints.http}/v2/health/ready)\n"
            f"  gRPC    {endpoints.grpc}\n"
            f"  metrics {endpoints.metrics}\n"
            f"try:\n  {curl_line(endpoints.http)}\n"
            "stop with Ctrl-C (in-flight requests finish first)",
        )
        code = process.wait()
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    if code != 0:
        from dq_edge.errors import DQEdgeError

        raise DQEdgeError(f"the Triton server exited with code {code}", "read its log above")
    typer.echo("server stopped")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
