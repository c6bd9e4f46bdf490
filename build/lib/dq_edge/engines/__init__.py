"""TensorRT engines: plan (pure Python), build (TensorRT calls), manifest, native backend.

- `plan`        what to build: graphs, profiles from `dq_edge.graph_io`, names, network typing
- `manifest`    the engine folder's manifest.json; refuses mismatched or stale engines
- `build`       the TensorRT builder calls (strongly typed), `dq-edge build-engine`
- `device`      thin cuda-python / pycuda layer (memory, copies, streams, events, CUDA graphs)
- `trt_backend` `TrtBackend`, the Backend protocol on engines with device-resident KV caches
- `compare`     TensorRT vs ONNX Runtime per graph with Polygraphy, `dq-edge compare`
Importing this package imports neither TensorRT nor CUDA.
"""
