"""A stand-in `tensorrt` module for the builder and the parser check (re-exported by
tests/engines_fakes.py). Each refusal it can make follows the cited TensorRT source."""

from __future__ import annotations

import types
from pathlib import Path


FOREIGN_CACHE = b"foreign"  # a timing cache written on another GPU / TensorRT version
CORRUPT_CACHE = b"corrupt"  # bytes TensorRT cannot read as a timing cache at all


def fake_tensorrt(version: str, strongly_typed_flag: bool = True, fail: bool = False, log: list | None = None,
                  unsupported_ops: frozenset[str] = frozenset()):
    """A stand-in `tensorrt` module for the builder: records the calls in `log` (see test_engines_build)."""
    import onnx

    log = [] if log is None else log
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Severity:
        ERROR, WARNING, INFO = 1, 2, 3

    class ILogger:
        def __init__(self):
            pass

    ILogger.Severity = Severity
    trt.ILogger = ILogger

    class Logger(ILogger):
        ERROR, WARNING = Severity.ERROR, Severity.WARNING

        def __init__(self, severity=None):
            super().__init__()

        def log(self, severity, msg):
            pass

    trt.Logger = Logger
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**({"STRONGLY_TYPED": 1} if strongly_typed_flag else {}))
    trt.BuilderFlag = types.SimpleNamespace(**({} if version.startswith("11") else {"FP16": 0, "INT8": 1}))
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs = flags, []
            log.append(("create_network", flags))

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return types.SimpleNamespace(name=self.inputs[i])

    class OnnxParser:
        """parse_from_file as before; supports_model_v2 / num_subgraphs / is_subgraph_supported /
        get_subgraph_nodes as bound in TensorRT python/src/parsers/pyOnnx.cpp (10.1+): nodes whose
        op type is in `unsupported_ops` form one unsupported subgraph."""

        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0
            self._subgraphs: list[tuple[bool, list[int]]] = []

        def supports_model_v2(self, model: bytes, path: str | None = None) -> bool:
            graph = onnx.load_from_string(model).graph
            bad = [i for i, n in enumerate(graph.node) if n.op_type in unsupported_ops]
            good = [i for i, n in enumerate(graph.node) if n.op_type not in unsupported_ops]
            self._subgraphs = [(True, good)] + ([(False, bad)] if bad else [])
            self.num_errors = 1 if bad else 0
            log.append(("supports_model_v2", path))
            return not bad

        @property
        def num_subgraphs(self) -> int:
            return len(self._subgraphs)

        def is_subgraph_supported(self, index: int) -> bool:
            return self._subgraphs[index][0]

        def get_subgraph_nodes(self, index: int) -> list[int]:
            return self._subgraphs[index][1]

        def get_error(self, index: int):
            return types.SimpleNamespace(desc=lambda: "No importer registered for op")

        def parse_from_file(self, path):
            model = onnx.load(path)
            self.network.inputs = [i.name for i in model.graph.input]
            self.network.onnx = Path(path).name
            return True

    class Cache:
        def __init__(self, blob):
            self.blob = blob

        def serialize(self):
            return self.blob + b"+"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.cache = [], [], None

        def set_memory_pool_limit(self, pool, size):
            log.append(("workspace", pool, size))

        def set_flag(self, flag):
            self.flags.append(flag)
            log.append(("set_flag", flag))

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, blob):
            log.append(("create_timing_cache", bytes(blob)))
            if bytes(blob).startswith(CORRUPT_CACHE):
                return None  # pyCoreDoc.h: "the created timing cache, or None if it could not be created"
            return Cache(bytes(blob))

        def set_timing_cache(self, cache, ignore_mismatch):
            # NvInfer.h (10.3) setTimingCache: "A failure will be reported if the CUDA device
            # property in the provided cache is different from current environment ... return
            # true if set successfully, false otherwise"; nothing is set then.
            if cache.blob.startswith(FOREIGN_CACHE) and not ignore_mismatch:
                log.append(("timing_cache_refused",))
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache  # None when no cache is set (pyCoreDoc.h, get_timing_cache)

    class Profile(dict):
        def set_shape(self, name, lo, opt, hi):
            self[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log.append(("build", network.onnx, config.builder_optimization_level, dict(config.profiles[0]), list(config.flags)))
            if fail:
                self.logger.log(Severity.ERROR, "out of workspace")
                return None
            return memoryview(f"engine<{network.onnx}>".encode())

    trt.OnnxParser, trt.Builder = OnnxParser, Builder
    return trt, log
