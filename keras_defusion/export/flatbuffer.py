"""Reading a TFLite flatbuffer: its operators, float islands and quantisation."""

from keras_defusion.errors import ExportError


def _schema():
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - depends on the TF build
        from ai_edge_litert import schema_py_generated as schema
    return schema


def _builtin_op_names():
    """{builtin op code: name} of the TFLite schema."""
    operators = _schema().BuiltinOperator
    return {value: name for name, value in vars(operators).items() if not name.startswith("_")}


def _model_bytes(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes)
    with open(path_or_bytes, "rb") as f:
        return f.read()


def tflite_op_names(path_or_bytes):
    """The sorted operator names of a TFLite file (or its bytes).

    Builtin ops by their schema name (`CONV_2D`, ...); custom ops by their
    custom code (Select-TF ops appear as `Flex...`).
    """
    schema = _schema()
    model = schema.Model.GetRootAsModel(_model_bytes(path_or_bytes), 0)
    builtin_names = _builtin_op_names()
    names = set()
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.add(code.CustomCode().decode())
        else:
            names.add(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(names)


def check_builtin_ops(path_or_bytes):
    """Raises ExportError when a TFLite model holds a Flex or custom op."""
    ops = tflite_op_names(path_or_bytes)
    builtin = set(_builtin_op_names().values()) - {"CUSTOM"}
    foreign = [name for name in ops if name not in builtin]
    if foreign:
        raise ExportError(
            f"the TFLite model needs non-builtin ops {foreign}; only builtin ops are allowed"
        )
    return ops


def tflite_float_ops(path_or_bytes):
    """Ops of a TFLite file that compute in float32 (besides (DE)QUANTIZE).

    In a full-integer file these are float islands the converter kept: ops
    without an int8 kernel, wrapped in DEQUANTIZE/QUANTIZE.

    Returns:
        sorted list of (op name, count) pairs.
    """
    schema = _schema()
    model = schema.Model.GetRootAsModel(_model_bytes(path_or_bytes), 0)
    builtin_names = _builtin_op_names()
    counts = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = builtin_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            if name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            outputs = [op.Outputs(k) for k in range(op.OutputsLength())]
            if any(graph.Tensors(t).Type() == schema.TensorType.FLOAT32 for t in outputs if t >= 0):
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items())


# Ops that only move or select values: their int8 kernels copy bytes, so an
# output quantised differently from its input silently changes every value.
DATA_MOVEMENT_OPS = (
    "REVERSE_V2", "RESHAPE", "STRIDED_SLICE", "SLICE", "CONCATENATION",
    "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "GATHER", "SPLIT", "SPLIT_V", "PACK",
    "UNPACK", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "TILE", "MAX_POOL_2D",
)


def requantizing_data_ops(path_or_bytes):
    """Data-movement ops of a quantized TFLite file whose input and output
    quantization differ (see `DATA_MOVEMENT_OPS`).

    Returns:
        list of dicts (op, index, input and output (scales, zero points));
        empty for a sound file.
    """
    schema = _schema()
    model = schema.Model.GetRootAsModel(_model_bytes(path_or_bytes), 0)
    builtin_names = _builtin_op_names()
    graph = model.Subgraphs(0)

    def quantization(tensor_index):
        params = graph.Tensors(tensor_index).Quantization()
        if params is None or params.ScaleLength() == 0:
            return None
        return (tuple(float(v) for v in params.ScaleAsNumpy()),
                tuple(int(v) for v in params.ZeroPointAsNumpy()))

    problems = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = builtin_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        if name not in DATA_MOVEMENT_OPS:
            continue
        output = quantization(op.Outputs(0))
        inputs = [op.Inputs(k) for k in range(op.InputsLength())]
        if name != "CONCATENATION":  # the rest move their first input only
            inputs = inputs[:1]
        for tensor in inputs:
            if tensor >= 0 and quantization(tensor) != output:
                problems.append({"op": name, "index": i, "input": quantization(tensor),
                                 "output": output})
    return problems
