"""Benchmark harness (torch-free): timing statistics, machine description, hardware floors and
per-stage latency of any `dq_edge.generation.backend.Backend`.

`dq-edge bench` (dq_edge/cli/bench.py) and the side-by-side suite (benchmarks/run_suite.py) are
built on it. Nothing here asserts a speed: tests only check that the harness runs and reports.
"""
