"""Hardware floors of this machine, measured in the same run as the benchmarks.

- memory bandwidth: streaming reads (an OR-reduction over a large array) and copies, split
  over as many threads as the process may use (numpy releases the GIL in both), at working-set
  sizes below and above the last-level cache;
- matmul throughput: numpy/OpenBLAS fp32 GEMM at the transformer's shapes ([batch, width] x
  [width, 4*width]) and at a large square shape (peak); int8 through ONNX Runtime's
  MatMulInteger when the `onnx` package is importable (it builds the one-node graph).

A decode step at batch 1 has to stream every weight once, so `weight bytes / bandwidth` bounds
its time from below; at batch 8 the GEMMs do more work per byte and `FLOPs / throughput` is the
bound the suite reports.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dq_edge.bench.timing import Stats, measure

MiB = 1 << 20


def usable_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def last_level_cache_bytes() -> int | None:
    """Size of the largest CPU cache sysfs reports (None where sysfs has none)."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes) if sizes else None


def memory_bandwidth(size_bytes: int, threads: int | None = None, reps: int = 5) -> dict:
    """Read and copy bandwidth in GB/s (1e9 bytes/s) for a working set of `size_bytes`.

    Read bytes = array size; copy counts source + destination (the STREAM convention, no
    write-allocate traffic), so copy GB/s is comparable to published STREAM numbers. One thread
    pool serves every call, and each timed call sweeps the working set enough times to move
    >= 256 MiB, so pool start-up and call overhead stay out of small working sets.
    """
    threads = threads or usable_threads()
    n = max(size_bytes // 8 * 2, threads * 1024)  # even: the read kernel sees int64 pairs
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)  # [n]; touched once below so page faults stay out of the timing
    dst.fill(0.0)
    words = src.view(np.int64)  # [n/2]; an integer OR-reduction is the cheapest full read numpy has
    bounds = [(int(c[0]), int(c[-1]) + 1) for c in np.array_split(np.arange(n // 2), threads)]
    sweeps = max(1, (256 * MiB) // src.nbytes)

    def read(b: tuple[int, int]) -> None:
        for _ in range(sweeps):
            np.bitwise_or.reduce(words[b[0]:b[1]])

    def copy(b: tuple[int, int]) -> None:
        for _ in range(sweeps):
            np.copyto(dst[2 * b[0]:2 * b[1]], src[2 * b[0]:2 * b[1]])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        def run(fn) -> None:
            list(pool.map(fn, bounds))

        read_s = measure(lambda: run(read), warmup=1, reps=reps)
        copy_s = measure(lambda: run(copy), warmup=1, reps=reps)
    moved = src.nbytes * sweeps
    # best-of: a floor is what the hardware can do, not what a noisy neighbour left over
    return {
        "size_bytes": int(src.nbytes),
        "threads": threads,
        "sweeps_per_call": int(sweeps),
        "read_gbps": round(moved / read_s.min / 1e9, 3),
        "copy_gbps": round(2 * moved / copy_s.min / 1e9, 3),
        "read_p50_gbps": round(moved / read_s.p50 / 1e9, 3),
    }


def gemm_fp32(m: int, k: int, n: int, reps: int = 5, max_seconds: float = 5.0) -> dict:
    """numpy (OpenBLAS) fp32 GEMM [m,k] x [k,n]: GFLOP/s from the fastest call."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    stats = measure(lambda: np.matmul(a, b, out=out), warmup=1, reps=reps, max_seconds=max_seconds)
    return _gemm_record("fp32-numpy", m, k, n, stats)


def gemm_int8_ort(m: int, k: int, n: int, reps: int = 5, max_seconds: float = 5.0, threads: int | None = None) -> dict | None:
    """ONNX Runtime MatMulInteger (uint8 x int8 -> int32); None when `onnx` is not installed."""
    try:
        import onnx  # noqa: PLC0415 - optional, only to build the one-node graph
        from onnx import TensorProto, helper  # noqa: PLC0415
    except ImportError:
        return None
    import onnxruntime as ort  # noqa: PLC0415

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 127, size=(k, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        initializer=[onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every supported onnxruntime reads
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 255, size=(m, k), dtype=np.uint8)}
    stats = measure(lambda: session.run(None, feed), warmup=1, reps=reps, max_seconds=max_seconds)
    return _gemm_record("int8-ort-matmulinteger", m, k, n, stats)


def _gemm_record(kind: str, m: int, k: int, n: int, stats: Stats) -> dict:
    flops = 2.0 * m * k * n
    return {
        "kind": kind,
        "shape": [m, k, n],
        "gflops": round(flops / stats.min / 1e9, 3),
        "gflops_p50": round(flops / stats.p50 / 1e9, 3),
        "p50_ms": round(stats.p50 * 1e3, 4),
    }


def measure_floors(widths: list[int], batches: list[int], quick: bool = False, threads: int | None = None) -> dict:
    """Bandwidth below/above the last-level cache and GEMM throughput at every (batch, width).

    The large working set is 2x the last-level cache (so it streams from DRAM), capped to keep
    quick runs quick. `threads` limits the bandwidth threads and ONNX Runtime's int8 GEMM; numpy's
    BLAS threads follow OPENBLAS_NUM_THREADS / OMP_NUM_THREADS (set before numpy is imported).
    """
    started = time.perf_counter()
    llc = last_level_cache_bytes()
    big = max(256 * MiB, 2 * llc) if llc else 1024 * MiB
    if quick:
        big = 64 * MiB
    sizes = sorted({16 * MiB, big})
    reps = 3 if quick else 5
    bandwidth = [memory_bandwidth(s, threads=threads, reps=reps) for s in sizes]
    gemms = []
    for width in sorted(set(widths)):
        for m in sorted(set(batches)):
            gemms.append(gemm_fp32(m, width, 4 * width, reps=reps))
            int8 = gemm_int8_ort(m, width, 4 * width, reps=reps, threads=threads)
            if int8 is not None:
                gemms.append(int8)
    peak = 512 if quick else 2048
    gemms.append(gemm_fp32(peak, peak, peak, reps=reps))
    int8_peak = gemm_int8_ort(peak, peak, peak, reps=reps, threads=threads)
    if int8_peak is not None:
        gemms.append(int8_peak)
    return {
        "threads": threads or usable_threads(),
        "last_level_cache_bytes": llc,
        "bandwidth": bandwidth,
        "gemm": gemms,
        "seconds": round(time.perf_counter() - started, 2),
    }


def bandwidth_for(floors: dict, working_set_bytes: int) -> float:
    """Read bandwidth (GB/s) measured at the smallest working set >= `working_set_bytes`
    (the largest measured otherwise): small models stream from cache, large ones from DRAM."""
    rows = sorted(floors["bandwidth"], key=lambda r: r["size_bytes"])
    for row in rows:
        if row["size_bytes"] >= working_set_bytes:
            return float(row["read_gbps"])
    return float(rows[-1]["read_gbps"])


def gemm_throughput_for(floors: dict, batch: int, width: int, kind: str = "fp32-numpy") -> float | None:
    """GFLOP/s measured at [batch, width] x [width, 4*width] (None if that shape was not run)."""
    for row in floors["gemm"]:
        if row["kind"] == kind and row["shape"] == [batch, width, 4 * width]:
            return float(row["gflops"])
    return None


def peak_gemm_throughput(floors: dict, kind: str = "fp32-numpy") -> float | None:
    squares = [r for r in floors["gemm"] if r["kind"] == kind and len(set(r["shape"])) == 1]
    return max((float(r["gflops"]) for r in squares), default=None)
