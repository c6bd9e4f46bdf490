"""ONNX operators the TensorRT 10.3 ONNX parser imports (JetPack 6.x ships TensorRT 10.3).

Data, not code. Source: onnx/onnx-tensorrt `docs/operators.md`, the rows marked "Y", at tag
`10.1-GA` (commit 96e781103cfc4adf4a6bb557e94bac8e693f6f4c), the last tag before 10.3 in the
repository snapshot read here, plus that repository's `docs/Changelog.md`: the 10.2 GA and 10.3 GA
entries add no operators (10.3: tensor `axes` for Slice, a new ScatterElements plugin); 10.4 GA
added BlackmanWindow, HammingWindow and HannWindow, 10.5 GA STFT, so those are not here.
Bernoulli is "N" in every 10.x matrix. The matrix's type column is stale (e.g. Clip accepts
INT64), so this is a name-level check only; when TensorRT is importable, `dq-edge check` also
asks the real parser (`dq_edge.export.trt_parser`). Only the default ONNX domain is accepted.
"""

from __future__ import annotations

TRT_VERSION = "10.3"
OPERATORS_SOURCE = "onnx/onnx-tensorrt docs/operators.md @ 10.1-GA (96e7811) + docs/Changelog.md 10.2/10.3 GA"

TRT_10_3_ONNX_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand
    EyeLike Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
    GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid
    HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LRN LSTM
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool
    MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression
    NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN RandomNormal
    RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round ScaledTanh Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
    Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
    Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

# Control flow and scatter are parseable, but break static KV-cache step graphs on TensorRT
# (data-dependent shapes, no CUDA graphs, slow in-place scatter): forbidden in token graphs.
FORBIDDEN_IN_STEP_GRAPHS = frozenset({"If", "Loop", "Scan", "ScatterND", "ScatterElements", "Scatter", "NonZero"})

# (op type, input index) pairs whose input is read as a shape/size/index-count on the host:
# a graph input flowing there (other than through Shape/Size) becomes a TensorRT shape tensor.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Range": (0, 1, 2),
    "ConstantOfShape": (0,),
    "Resize": (2, 3),
    "Upsample": (1,),
    "Pad": (1, 2, 3),
    "TopK": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "OneHot": (1,),
    "Split": (1,),
    "ReduceSum": (1,),
    "ReduceMean": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "ReduceProd": (1,),
    "ReduceL2": (1,),
    "ReduceSumSquare": (1,),
    "ReduceL1": (1,),
    "ReduceLogSum": (1,),
    "ReduceLogSumExp": (1,),
    "Trilu": (1,),
    "CumSum": (1,),
    "EyeLike": (),
}
