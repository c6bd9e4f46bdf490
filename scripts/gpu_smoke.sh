#!/usr/bin/env bash
# GPU smoke test for an RTX GPU or a Jetson with TensorRT: the checks that find the most bugs
# first, under 10 minutes in all, one JSON report.
#
#   bash scripts/gpu_smoke.sh [OUT_DIR]        (default gpu_smoke/; report: OUT_DIR/gpu_smoke.json)
#   EXPORT=path/to/export bash scripts/gpu_smoke.sh   # reuse an export (e.g. on a Jetson without torch)
#
# Order (each step has its own time limit; once the 9.5-minute budget is spent the remaining
# steps are recorded as skipped):
#   1 versions and probes        driver / CUDA / TensorRT / ORT providers, the device-layer probe
#   2 device layer               scripts/gpu_device_check.py if CuPy is installed
#   3 ORT binding semantics      does a bound host input stay a bind-time snapshot on the CUDA EP,
#                                is a device pointer read live (what the runtime relies on)
#   4 export                     shipped model, fp32 + fp16 (CPU; skipped with EXPORT=...)
#   5 ORT-CUDA / ORT-TRT vs CPU  greedy tokens and logits through the generation loop
#   6 pytest -m gpu              real builds, TrtBackend vs ORT-CPU, CUDA graphs
#   7 fp16 builds                twice with one timing cache, then once with a foreign cache
#   8 compare                    Polygraphy TensorRT vs ONNX Runtime per graph
#   9 run --backend trt          with and without --cuda-graph vs ort-cpu greedy tokens
#  10 bench                      trt with and without CUDA graphs, ort-cuda
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_smoke}"
mkdir -p "$OUT"
STEPS="$OUT/steps.jsonl"
: > "$STEPS"
START=$(date +%s)
BUDGET=570
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DQ="python -m dq_edge"

# step NAME LIMIT_SECONDS COMMAND...: runs COMMAND with a time limit, records rc, seconds, log tail
step() {
  local name="$1" limit="$2"; shift 2
  local now left t0 rc status
  now=$(date +%s); left=$((BUDGET - (now - START)))
  if [ "$left" -le 5 ]; then
    python - "$STEPS" "$name" <<'PY'
import json, sys
open(sys.argv[1], "a").write(json.dumps({"step": sys.argv[2], "status": "skipped", "reason": "time budget spent"}) + "\n")
PY
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s)" >&2
  t0=$(date +%s.%N)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  status=$([ $rc -eq 0 ] && echo ok || ([ $rc -eq 124 ] && echo timeout || echo failed))
  python - "$STEPS" "$name" "$rc" "$status" "$t0" "$OUT/$name.log" "$OUT/$name.json" <<'PY'
import json, os, sys, time
steps, name, rc, status, t0, log, detail = sys.argv[1:]
entry = {"step": name, "status": status, "rc": int(rc), "seconds": round(time.time() - float(t0), 1)}
text = open(log, errors="replace").read()
entry["log_tail"] = text[-1500:]
if os.path.isfile(detail):
    try:
        entry["detail"] = json.load(open(detail))
    except ValueError:
        pass
open(steps, "a").write(json.dumps(entry) + "\n")
PY
  echo "   -> $status" >&2
}

# 1 ------------------------------------------------------------------------------------------
step versions 30 python - "$OUT/versions.json" <<'PY'
import json, platform, subprocess, sys
from dq_edge.engines_probe import gpu_unavailable_reason, probe_cuda, tensorrt_version
info = {"python": platform.python_version(), "machine": platform.machine()}
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=10).stdout.strip()
except (OSError, subprocess.TimeoutExpired) as exc:
    info["nvidia_smi"] = f"unavailable: {exc}"  # Jetson: no nvidia-smi, see tegrastats
info["tensorrt"] = tensorrt_version()
probe = probe_cuda()
info["cuda_probe"] = {"layer": probe.layer, "devices": probe.devices, "error": probe.error}
info["gpu_unavailable_reason"] = gpu_unavailable_reason()
try:
    import onnxruntime as ort
    info["onnxruntime"] = ort.__version__
    info["ort_providers"] = ort.get_available_providers()
except ImportError as exc:
    info["onnxruntime"] = f"not importable: {exc}"
try:
    from importlib.metadata import distributions
    names = sorted({d.metadata["Name"].lower() for d in distributions()})
    info["ort_wheels"] = [n for n in names if n.startswith("onnxruntime")]  # must be exactly one
    info["cuda_python"] = [f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"].lower().startswith("cuda-")]
except Exception as exc:  # noqa: BLE001
    info["ort_wheels"] = str(exc)
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info, indent=1))
sys.exit(0 if probe.devices > 0 and len(info.get("ort_wheels", [])) == 1 else 1)
PY

# 2 ------------------------------------------------------------------------------------------
if python -c "import cupy" 2>/dev/null; then
  step device_layer 60 bash -c "python scripts/gpu_device_check.py > '$OUT/device_layer.json'"
fi

# 3 ------------------------------------------------------------------------------------------
step ort_binding 60 python - "$OUT/ort_binding.json" <<'PY'
"""ORT's IOBinding on the CUDA EP: a bound host input should be a bind-time snapshot
(IOBinding.cc CopyOneInputAcrossDevices), a device pointer should be read live. The runtime and
tests/ort_fakes.py assume exactly this; a different answer here means both must change."""
import json, sys
import numpy as np
import onnx
from onnx import TensorProto, helper
import onnxruntime as ort
from dq_edge.device import open_device

graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
sess = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
out = {"providers": sess.get_providers()}
host = np.ones(4, np.float32)
b = sess.io_binding()
b.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(host))
b.bind_output("y", "cpu")
sess.run_with_iobinding(b)
host[:] = 5
sess.run_with_iobinding(b)
out["host_input_is_snapshot"] = bool(b.copy_outputs_to_cpu()[0][0] == 2.0)
dev = open_device()
stream = dev.create_stream()
ptr = dev.alloc(16)
dev.h2d(ptr, np.ones(4, np.float32), stream); dev.synchronize(stream)
b2 = sess.io_binding()
b2.bind_input("x", "cuda", 0, np.float32, [4], ptr)
b2.bind_output("y", "cpu")
sess.run_with_iobinding(b2)
dev.h2d(ptr, np.full(4, 5, np.float32), stream); dev.synchronize(stream)
sess.run_with_iobinding(b2)
out["device_pointer_is_live"] = bool(b2.copy_outputs_to_cpu()[0][0] == 10.0)
dev.free(ptr); dev.destroy_stream(stream)
json.dump(out, open(sys.argv[1], "w"))
print(out)
sys.exit(0 if out["providers"][0] == "CUDAExecutionProvider" and out["device_pointer_is_live"] else 1)
PY

# 4 ------------------------------------------------------------------------------------------
if [ -n "${EXPORT:-}" ]; then
  EXP="$EXPORT"
else
  EXP="$OUT/export"
  step export 120 $DQ export dq_edge/assets/model --out "$EXP" --precision fp32,fp16 --force
fi

# 5 ------------------------------------------------------------------------------------------
step ort_gpu_vs_cpu 150 python - "$EXP" "$OUT/ort_gpu_vs_cpu.json" <<'PY'
"""Greedy generation through the loop on ORT-CPU, ORT-CUDA and ORT-TensorRT EP: tokens and logits."""
import json, sys, time
import numpy as np
from dq_edge.export.manifest import load_export
from dq_edge.generation import SamplingParams, generate_tokens
from dq_edge.runtime.ort_backend import OrtBackend, provider_available

class Rec:
    def __init__(self, b):
        self.b, self.logits = b, []
        for k in ("name", "precision", "max_batch", "dims", "layout"):
            setattr(self, k, getattr(b, k))
    def __getattr__(self, k):
        fn = getattr(self.b, k)
        if k not in ("position_step", "content_step", "prefill"):
            return fn
        def w(*a):
            out = fn(*a); self.logits.append(out.copy()); return out
        return w

folder, report = sys.argv[1], {}
ok = True
for precision in ("fp32", "fp16"):
    info = load_export(folder, precision)
    runs = {}
    for provider in ("cpu", "cuda", "trt"):
        if provider != "cpu" and not provider_available(provider):
            report[f"{precision}/{provider}"] = "provider not available"; continue
        t0 = time.perf_counter()
        rec = Rec(OrtBackend(info.files, info.dims, info.layout, precision, info.max_batch, provider=provider))
        batch = min(4, info.max_batch)
        classes = np.arange(batch) % info.layout.n_classes if info.layout.n_classes else None
        tokens = generate_tokens(rec, info.layout, batch, classes=classes, params=SamplingParams(greedy=True))
        runs[provider] = (rec, tokens, time.perf_counter() - t0)
    ref = runs["cpu"]
    for provider, (rec, tokens, secs) in runs.items():
        n = min(len(rec.logits), len(ref[0].logits))
        diff = max(float(np.abs(a - b).max()) for a, b in zip(rec.logits[:n], ref[0].logits[:n]))
        same = bool(np.array_equal(tokens.content, ref[1].content) and np.array_equal(tokens.position, ref[1].position))
        report[f"{precision}/{provider}"] = {"same_tokens_as_cpu": same, "max_abs_logit_diff": diff, "seconds": round(secs, 2)}
        # fp32 must agree; fp16 may flip a near-tie (reported, not failed)
        ok &= same or precision != "fp32"
json.dump(report, open(sys.argv[2], "w"), indent=1)
print(json.dumps(report, indent=1))
sys.exit(0 if ok else 1)
PY

# 6 ------------------------------------------------------------------------------------------
step pytest_gpu 180 python -m pytest -q -p no:cacheprovider -m gpu -x tests/test_engines_gpu.py

# 7 ------------------------------------------------------------------------------------------
CACHE="$OUT/smoke.timing-cache"
rm -f "$CACHE"
step build_fp16_first 150 $DQ build-engine "$EXP" --fp16 --out "$OUT/engines-fp16" --timing-cache "$CACHE"
step build_fp16_cached 120 $DQ build-engine "$EXP" --fp16 --out "$OUT/engines-fp16-b" --timing-cache "$CACHE"
head -c 4096 /dev/urandom > "$OUT/foreign.timing-cache"  # what a cache from another GPU / TensorRT looks like to this one
step build_fp16_foreign_cache 150 $DQ build-engine "$EXP" --fp16 --out "$OUT/engines-fp16-c" --timing-cache "$OUT/foreign.timing-cache"

# 8 ------------------------------------------------------------------------------------------
step compare 90 $DQ compare "$EXP" --engine "$OUT/engines-fp16"

# 9 ------------------------------------------------------------------------------------------
step run_ort_cpu 60 $DQ run --engine "$EXP" --precision fp16 --backend ort-cpu --greedy --num 8 --out "$OUT/run-ort-cpu" --overwrite --quiet
step run_trt 60 $DQ run --engine "$OUT/engines-fp16" --backend trt --greedy --num 8 --out "$OUT/run-trt" --overwrite --quiet
step run_trt_graph 60 $DQ run --engine "$OUT/engines-fp16" --backend trt --cuda-graph --greedy --num 8 --out "$OUT/run-trt-graph" --overwrite --quiet
step tokens_agree 20 python - "$OUT" <<'PY'
import json, sys
import numpy as np
out = sys.argv[1]
ref = np.load(f"{out}/run-ort-cpu/tokens.npz")
res = {}
for name in ("run-trt", "run-trt-graph"):
    try:
        got = np.load(f"{out}/{name}/tokens.npz")
    except OSError as exc:
        res[name] = f"missing: {exc}"; continue
    res[name] = {k: bool(np.array_equal(got[k], ref[k])) for k in ref.files if k in got.files}
json.dump(res, open(f"{out}/tokens_agree.json", "w"))
print(res)
graph_vs_plain = np.load(f"{out}/run-trt/tokens.npz"), np.load(f"{out}/run-trt-graph/tokens.npz")
# CUDA graphs replay the same kernels: identical tokens; fp16 TRT vs CPU may flip near-ties
sys.exit(0 if all(np.array_equal(graph_vs_plain[0][k], graph_vs_plain[1][k]) for k in graph_vs_plain[0].files) else 1)
PY

# 10 -----------------------------------------------------------------------------------------
step bench_trt 60 $DQ bench --engine "$OUT/engines-fp16" --backend trt --batch-sizes 1,8 --json "$OUT/bench_trt.json"
step bench_trt_graph 60 $DQ bench --engine "$OUT/engines-fp16" --backend trt --cuda-graph --batch-sizes 1,8 --json "$OUT/bench_trt_graph.json"
step bench_ort_cuda 60 $DQ bench --engine "$EXP" --backend ort-cuda --precision fp16 --batch-sizes 1,8 --json "$OUT/bench_ort_cuda.json"

python - "$STEPS" "$OUT/gpu_smoke.json" "$START" <<'PY'
import json, sys, time
steps = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
report = {"seconds": round(time.time() - int(sys.argv[3]), 1),
          "ok": all(s["status"] in ("ok", "skipped") for s in steps), "steps": steps}
json.dump(report, open(sys.argv[2], "w"), indent=1)
print(f"{sys.argv[2]}: " + ", ".join(f"{s['step']}={s['status']}" for s in steps))
PY
