"""Work and bytes of one step per configuration, and its floors on this machine.

- bytes floor (batch 1): streamed weight bytes / read bandwidth. Streamed weights are every
  parameter of the two stacks and the two heads (embedding tables are excluded: a step reads
  one row of them), at the configuration's weight bits from dq_edge.precisions (fp32 4 B,
  fp16 2 B, int8 / w8 1 B, w4 0.5 B; block scales of w8/w4 not counted).
  The static KV caches that a step also reads are reported beside it (`kv_bytes`), not added:
  the issue defines the floor by the weights.
- FLOPs floor (batch 8): matmul FLOPs / GEMM throughput measured at the step's GEMM shape
  ([batch, width] x [width, 4*width]; int8 configurations use the int8 GEMM); the official
  algorithm's GEMMs have batch*prefix rows, so it uses the peak (large square) throughput.
"""

from __future__ import annotations

import torch

from dq_edge import precisions
from dq_edge.bench.floors import bandwidth_for, gemm_throughput_for, peak_gemm_throughput
from dq_edge.graph_io import GraphDims

WEIGHT_BYTES = {p.name: p.weight_bits / 8 for p in precisions.TABLE}
ACT_BYTES = {p.name: 2 if p.activation == "float16" else 4 for p in precisions.TABLE}
INT8_COMPUTE = ("int8", "w8", "w4")  # integer GEMMs (w8/w4: accuracy level 4 quantizes activations to int8)


def streamed_params(tr: torch.nn.Module) -> int:
    parts = (tr.position_transformer, tr.content_transformer, tr.position_head, tr.content_head)
    return sum(p.numel() for part in parts for p in part.parameters())


def kv_bytes(dims: GraphDims, batch: int, precision: str) -> int:
    layers = dims.position_layers + dims.content_layers
    return 2 * layers * batch * dims.heads * dims.max_length * dims.head_dim * ACT_BYTES[precision]


def step_flops(tr: torch.nn.Module, dims: GraphDims, batch: int, prefix: int, official: bool) -> float:
    """Matmul FLOPs of one token step. KV steps: every weight once per sample plus attention
    over all L cache rows (masked, still computed). Official: every weight once per prefix
    token plus attention among the prefix tokens."""
    layers = dims.position_layers + dims.content_layers
    rows = batch * prefix if official else batch
    attended = prefix if official else dims.max_length
    return 2.0 * streamed_params(tr) * rows + 4.0 * layers * dims.width * attended * rows


def precision_of(config: str) -> str:
    return config.rsplit("-", 1)[-1] if config.startswith("ort-") else "fp32"


def floor_record(floors: dict, tr: torch.nn.Module, dims: GraphDims, config: str, batch: int, prefix: int, step_ms: float) -> dict:
    precision = precision_of(config)
    official = config == "official"
    wbytes = int(streamed_params(tr) * WEIGHT_BYTES[precision])
    bandwidth = bandwidth_for(floors, wbytes)
    bytes_floor_ms = wbytes / (bandwidth * 1e9) * 1e3
    flops = step_flops(tr, dims, batch, prefix, official)
    kind = "int8-ort-matmulinteger" if precision in INT8_COMPUTE else "fp32-numpy"
    throughput = peak_gemm_throughput(floors, kind) if official else gemm_throughput_for(floors, batch, dims.width, kind)
    throughput = throughput or peak_gemm_throughput(floors, "fp32-numpy")
    flops_floor_ms = flops / (throughput * 1e9) * 1e3
    floor_ms, basis = (bytes_floor_ms, "bytes") if batch == 1 else (flops_floor_ms, "flops")
    kv = 0 if official else kv_bytes(dims, batch, precision)
    # what a step must stream in total: weights once + every static cache row (masked rows too)
    streamed_floor_ms = (wbytes + kv) / (bandwidth_for(floors, wbytes + kv) * 1e9) * 1e3
    return {
        "config": config,
        "batch": batch,
        "prefix": prefix,
        "step_ms": step_ms,
        "weight_bytes": wbytes,
        "kv_bytes": kv,
        "weights_plus_kv_floor_ms": round(streamed_floor_ms, 4),
        "ratio_to_weights_plus_kv_floor": round(step_ms / streamed_floor_ms, 3) if streamed_floor_ms else None,
        "bandwidth_gbps": bandwidth,
        "bytes_floor_ms": round(bytes_floor_ms, 4),
        "flops": flops,
        "gemm_gflops": throughput,
        "gemm_kind": kind if not official else f"{kind} peak",
        "flops_floor_ms": round(flops_floor_ms, 4),
        "floor_basis": basis,
        "floor_ms": round(floor_ms, 4),
        "ratio_to_floor": round(step_ms / floor_ms, 3) if floor_ms else None,
    }
