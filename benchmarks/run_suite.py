"""The dq-edge benchmark suite: one command, one run, same weights for every configuration.

    python benchmarks/run_suite.py            # full run (about 10-20 min on 2 cores; CPU must be quiet)
    python benchmarks/run_suite.py --quick    # smoke run: fewer repetitions, emoji64 only unless --sizes

Configurations: (a) official algorithm (full-prefix recompute, torch eager), (b) torch + KV
cache, (c) runtime on ONNX Runtime fp32, (d) int8, (e) fp16 (when the CPU provider runs it),
(f) w8 and (g) w4 weight-only. `--configs` runs a subset (e.g. the weight-only comparison
without the official algorithm's hour at p6c18); the results record which ran.
Sizes: emoji64 (shipped model or random emoji64 preset, full images) and p6c18 dims (random
weights, 256-px token grid). Floors (bandwidth, GEMM throughput) are measured in the same run.
Writes benchmarks/results/<machine>-<date>.json, .md and .png (see suite_report.py).
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import time
from pathlib import Path


def _threads_from_argv(argv: list[str]) -> int | None:
    """`--threads N` must reach OpenMP / OpenBLAS before numpy and torch load them."""
    for i, arg in enumerate(argv):
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
    return None


if __name__ == "__main__" and _threads_from_argv(sys.argv[1:]):
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_threads_from_argv(sys.argv[1:]))

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dq_edge.bench.floors import measure_floors  # noqa: E402
from dq_edge.bench.machine import machine_info, machine_slug, peak_rss_mib, utc_stamp  # noqa: E402
from dq_edge.bench.stages import BenchSettings, sequence_length  # noqa: E402

import suite_models  # noqa: E402
from suite_floors import floor_record, streamed_params  # noqa: E402
from suite_measure import decoder_seconds, image_replays, kv_curve, official_curve, per_image, sampled_generation  # noqa: E402
from suite_report import evaluate_targets, write_results  # noqa: E402

PREFIXES = {"emoji64": [16, 80, 160], "p6c18": [64, 320, 640]}
ONE_RUN = BenchSettings(warmup=0, reps=1)  # official whole-image replays: seconds to minutes each
CONFIGS = ("official", "torch-kv", "ort-fp32", "ort-int8", "ort-fp16", "ort-w8", "ort-w4")


def precisions_of(configs: tuple[str, ...]) -> list[str]:
    """ONNX precisions the configurations need (fp32 always: every other one derives from it)."""
    return ["fp32"] + [c.removeprefix("ort-") for c in configs if c.startswith("ort-") and c != "ort-fp32"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def open_config(model: suite_models.SuiteModel, config: str):
    if config == "torch-kv":
        return suite_models.torch_backend(model)
    return suite_models.ort_backend(model, config.removeprefix("ort-"))


def bench_model(model: suite_models.SuiteModel, floors: dict, batches: list[int], settings: BenchSettings, official_settings: BenchSettings, configs: tuple[str, ...] = CONFIGS) -> dict:
    prefixes = [p for p in PREFIXES.get(model.name, PREFIXES["p6c18"]) if p < model.dims.max_length - 1]
    T = sequence_length(model.layout, model.fine_ratio)
    T_fixed = sequence_length(model.layout, 1.0)
    log(f"{model.name}: {model.label}; fine ratio {model.fine_ratio:.3f} ({model.fine_ratio_source}) -> {T} tokens/image, all-fine {T_fixed}")
    ratios = {"dynamic": model.fine_ratio, "all_fine": 1.0}
    curves: dict[str, dict] = {}
    images: dict[str, dict] = {}
    unavailable: dict[str, str] = {}
    for config in configs:
        t0 = time.perf_counter()
        try:
            if config == "official":
                target = model.tr
                curves[config] = {b: official_curve(model.tr, b, prefixes, official_settings.reps, log, official_settings.max_seconds) for b in batches}
            else:
                target = open_config(model, config)
                curves[config] = {b: kv_curve(target, b, prefixes, settings, log, config) for b in batches}
            if model.has_vae:  # whole images, measured (tokens by replay + the decoder)
                images[config] = measure_images(model, config, target, batches, ratios, settings if config != "official" else ONE_RUN)
        except Exception as exc:  # noqa: BLE001 - e.g. an fp16 graph the CPU provider refuses: keep the others
            unavailable[config] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log(f"  {config} unavailable: {unavailable[config]}")
        finally:
            target = None
            gc.collect()
        log(f"  {config} done in {time.perf_counter() - t0:.1f} s")
    record = {
        "name": model.name,
        "label": model.label,
        "fine_ratio": model.fine_ratio,
        "fine_ratio_source": model.fine_ratio_source,
        "tokens_per_image": T,
        "tokens_all_fine": T_fixed,
        "dims": model.dims.to_dict(),
        "streamed_params": streamed_params(model.tr),
        "prefixes": prefixes,
        "batches": batches,
        "notes": model.notes,
        "unavailable": unavailable,
        "curves": {c: {str(b): {str(p): r for p, r in pts.items()} for b, pts in per_b.items()} for c, per_b in curves.items()},
        "per_image_estimated": {},
        "images_measured": images,
        "floors": [],
    }
    for config, per_b in curves.items():
        record["per_image_estimated"][config] = {}
        for b, pts in per_b.items():
            ms = {p: r["wall"]["p50"] for p, r in pts.items()}
            record["per_image_estimated"][config][str(b)] = {name: per_image(ms, model.layout, r, b) for name, r in ratios.items()}
            for p, step_ms in ms.items():
                record["floors"].append(floor_record(floors, model.tr, model.dims, config, b, p, step_ms))
    return record


def measure_images(model, config: str, target, batches: list[int], ratios: dict[str, float], settings: BenchSettings) -> dict:
    if config in ("official", "torch-kv"):
        vae = model.vae
        decode = lambda codes: vae.decode_codes(torch.from_numpy(codes))  # noqa: E731
    else:
        decode = target.decode
    out = {}
    for b in batches:
        if config == "official" and b > 1:
            continue  # minutes per batch; batch 1 already checks the per-step integration
        with torch.inference_mode():
            replays = image_replays(config, target, model.layout, b, ratios, settings)
            dec = decoder_seconds(decode, model.layout, b, settings)
        for r in replays.values():
            r["decoder_ms"] = round(dec * 1e3, 4)
            r["images_per_s_with_decoder"] = round(b / (r["wall"]["p50"] / 1e3 + dec), 4)
        if config != "official":  # the real loop: sampling + masks, lengths chosen by the model
            with torch.inference_mode():
                replays["sampled"] = sampled_generation(target, model.layout, b, decode)
        out[str(b)] = replays
        log(f"  {config} b{b} images/s (tokens+decoder): " + ", ".join(f"{k} {v.get('images_per_s_with_decoder', v['images_per_s']):.2f}" for k, v in replays.items()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 warmup + 2 reps, emoji64 only unless --sizes")
    ap.add_argument("--sizes", default=None, help="comma list of emoji64,p6c18 (default: both; --quick: emoji64)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)} (default: all)")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per point (default 5, quick 2)")
    ap.add_argument("--threads", type=int, default=None, help="threads for torch, ONNX Runtime and the floors alike (default: every usable core); 1 on a shared machine")
    ap.add_argument("--reuse-exports", action="store_true", help="reuse p6c18 step graphs exported by older code (noted in the results)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--p6c18-preset", default="p6c18", help=argparse.SUPPRESS)  # tests: "tiny" on the same grid
    args = ap.parse_args(argv)
    started = time.perf_counter()
    sizes = (args.sizes or ("emoji64" if args.quick else "emoji64,p6c18")).split(",")
    batches = sorted({int(b) for b in args.batches.split(",")})
    configs = tuple(c for c in CONFIGS if c in args.configs.split(","))
    unknown = set(args.configs.split(",")) - set(CONFIGS)
    if unknown or not configs:
        ap.error(f"unknown --configs {', '.join(sorted(unknown)) or args.configs!r}; choose from {', '.join(CONFIGS)}")
    wanted = precisions_of(configs)
    reps = args.reps or (2 if args.quick else 5)
    settings = BenchSettings(warmup=1, reps=reps, max_seconds=30.0)
    official_settings = BenchSettings(warmup=1, reps=min(reps, 3), max_seconds=20.0)
    threads = args.threads or max(1, len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    suite_models.ORT_THREADS = threads
    suite_models.REUSE_EXPORTS = args.reuse_exports

    machine = machine_info()
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        log(f"WARNING: load average {load_start[0]:.2f} before the run: other processes share the CPU, numbers will be noisy")
    log(f"machine: {machine['cpu']}, {machine['cores_usable']} cores, torch {machine['versions']['torch']}, onnxruntime {machine['versions']['onnxruntime']}")
    log("measuring floors (bandwidth, GEMM throughput)")
    floors = measure_floors(widths=[256, 1024], batches=batches, quick=args.quick, threads=threads)
    log(f"  read bandwidth {', '.join(str(r['read_gbps']) for r in floors['bandwidth'])} GB/s; took {floors['seconds']} s")

    models = []
    for size in sizes:
        t0 = time.perf_counter()
        if size == "emoji64":
            model = suite_models.prepare_emoji64(wanted, log)
        elif size == "p6c18":
            model = suite_models.prepare_p6c18(wanted, log, preset=args.p6c18_preset)
        else:
            ap.error(f"unknown size {size!r}")
        log(f"{size}: prepared in {time.perf_counter() - t0:.1f} s")
        models.append(bench_model(model, floors, batches, settings, official_settings, configs))
        del model
        gc.collect()

    result = {
        "kind": "dq-edge-bench-suite",
        "created": utc_stamp(),
        "command": "python benchmarks/run_suite.py" + ("".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))),
        "quick": args.quick,
        "configs": list(configs),
        "settings": {"threads": threads, "torch_threads": torch.get_num_threads(), "reps": reps, "warmup": 1, "official_reps": official_settings.reps, "max_seconds_per_point": settings.max_seconds, "batches": batches},
        "machine": machine,
        "floors": floors,
        "models": models,
        "peak_rss_mib": peak_rss_mib(),
        # 1/5/15-minute load averages: anything well above 0 at the start means a shared CPU
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
    }
    result["targets"] = evaluate_targets(result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    stem = f"{machine_slug(machine)}-{result['created'][:10]}" + (f"-t{args.threads}" if args.threads else "") + ("-quick" if args.quick else "")
    paths = write_results(result, args.out, stem)
    log(f"done in {result['seconds']} s: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
