"""sonnx: export to ONNX and import from ONNX, checked against onnxruntime.

Needs the optional extra (`pip install 'singax[onnx]'`); skipped without it.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the optional onnx extra: pip install 'singax[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'singax[onnx]'")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from singax import autograd, layer, model, opt, sonnx, tensor  # noqa: E402
from singax.autograd.rnn import CudnnRNNHandle  # noqa: E402
from singax.tensor import Tensor  # noqa: E402
from test_ops import cases, sample_inputs  # noqa: E402
from _helpers import mnist_cnn  # noqa: E402


# --------------------------------------------------------------------------- helpers
def ort_run(m, feeds):
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, feeds)))


def as_singa(a):
    """What singax produces for an ONNX output: bool -> 0/1 float32, int64 -> int32."""
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    return a.astype(np.int32) if a.dtype == np.int64 else a


def close(got, want, rtol=1e-4):
    want = as_singa(want)
    got = np.asarray(got)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    atol = 1e-5 * max(1.0, float(np.max(np.abs(want)))) if want.size else 0
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol)


def t(a, **kw):
    a = np.asarray(a)
    return Tensor(data=a, dtype=a.dtype, **kw)


def node_model(op_type, inputs, outputs=("y",), opset=11, inits=(), **attrs):
    """A one-node model: `inputs` = [(name, array)], `inits` = names given as initializers."""
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                    for n, a in inputs if n not in inits and n]
    initializers = [numpy_helper.from_array(np.asarray(a), n) for n, a in inputs if n in inits]
    names = [n for n, _ in inputs]
    node = helper.make_node(op_type, names, list(outputs), name=f"the_{op_type.lower()}", **attrs)
    outs = [helper.make_empty_tensor_value_info(o) for o in outputs if o]
    g = helper.make_graph([node], "g", graph_inputs, outs, initializer=initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)   # fills in the output types


def check_import(m, feeds, rtol=1e-4):
    """prepare + run in singax == onnxruntime."""
    want = ort_run(m, feeds)
    got = sonnx.prepare(m).run(feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        close(g, w, rtol)


def check_export(inputs, outputs, feeds=None, rtol=1e-4):
    """to_onnx -> onnxruntime == singax, and import -> singax == singax; returns the model."""
    m = sonnx.to_onnx(inputs, outputs)
    feeds = [np.asarray(x.data) for x in inputs] if feeds is None else feeds
    for y, o in zip(outputs, ort_run(m, feeds)):
        close(o, np.asarray(y.data), rtol)
    for y, o in zip(outputs, sonnx.prepare(m).run(feeds)):
        close(o, np.asarray(y.data), rtol)
    return m


@pytest.fixture
def eval_mode():
    autograd.training = False
    yield


RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- export: every operator row
def export_cases():
    for p in cases():
        spec, shapes, attrs = p.values
        if spec.cls != "RankingLoss":
            # re-import the first attribute sample of each case (the ONNX-side tests below
            # cover the import attributes; this keeps the compile count down)
            yield pytest.param(spec, shapes, attrs, p.id.endswith("-a0"), id=p.id)


@pytest.mark.parametrize("spec,shapes,attrs,reimport", list(export_cases()))
def test_every_operator_exports(spec, shapes, attrs, reimport, eval_mode):
    arrays = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in sample_inputs(spec, shapes, attrs)]
    xs = [t(a) for a in arrays]
    ys = spec.op_class(**attrs)(*xs)
    m = sonnx.to_onnx(xs, list(ys))
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version == 11
    for y, o in zip(ys, ort_run(m, arrays)):
        assert o.dtype == np.asarray(y.data).dtype
        close(o, np.asarray(y.data))
    if not reimport:
        return
    rtol = 1e-2 if spec.name == "cast" and attrs.get("to") == tensor.float16 else 1e-4   # import maps float16 to float32
    for y, o in zip(ys, sonnx.prepare(m).run(arrays)):
        close(o, np.asarray(y.data), rtol)


def test_export_names_and_attributes(eval_mode):
    x = t(RNG.standard_normal((2, 3, 6, 6)).astype(np.float32))
    h = autograd.ConvHandle(x, 3, 1, 1, 3, 4, True)
    W, b = t(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), stores_grad=True), t(np.zeros(4, np.float32), stores_grad=True)
    W.name, b.name = "conv.W", "conv.b"
    y = autograd.conv2d(h, x, W, b, odd_padding=(1, 0, 0, 2))     # (top, bottom, left, right)
    y = autograd.equal(y, y)
    bnh = autograd.BatchNormHandle(0.9, y)
    scale, bias = t(np.ones(4, np.float32), stores_grad=True), t(np.zeros(4, np.float32), stores_grad=True)
    rm, rv = t(np.zeros(4, np.float32)), t(np.ones(4, np.float32))
    z = autograd.batchnorm_2d(bnh, y, scale, bias, rm, rv)
    m = check_export([x], [z])
    by_type = {n.op_type: n for n in m.graph.node}
    attrs = {a.name: helper.get_attribute_value(a) for a in by_type["Conv"].attribute}
    assert attrs["pads"] == [2, 1, 1, 3]    # ONNX order [top, left, bottom, right]
    assert "Equal" in by_type   # SINGA wrote 'equal'
    bn = {a.name: helper.get_attribute_value(a) for a in by_type["BatchNormalization"].attribute}
    assert bn["momentum"] == pytest.approx(0.1)   # ONNX weights the old value: 1 - SINGA's 0.9
    assert {"conv.W", "conv.b"} <= {i.name for i in m.graph.initializer}
    assert [i.name for i in m.graph.input] == [x.name]


def test_export_skips_numbers_and_shapes_listed_as_inputs(eval_mode):
    xv = RNG.standard_normal((3, 2)).astype(np.float32)
    x = t(xv)
    y = autograd.reshape(autograd.clip(x, -0.5, 0.5), (2, 3))
    m = check_export([x, -0.5, 0.5, (2, 3)], [y], feeds=[xv])
    assert [i.name for i in m.graph.input] == [x.name]
    got = sonnx.prepare(m).run([x])[0]
    np.testing.assert_allclose(tensor.to_numpy(got), np.clip(xv, -0.5, 0.5).reshape(2, 3))


def test_export_model_form_and_several_outputs(eval_mode):
    class Two(model.Model):
        def __init__(self):
            super().__init__()
            self.fc = layer.Linear(5)

        def forward(self, x):
            y = self.fc(x)
            return autograd.relu(y), autograd.sigmoid(y)

    net, x = Two(), t(RNG.standard_normal((3, 4)).astype(np.float32))
    m = sonnx.to_onnx(net, [x])
    ys = net.forward(x)
    for y, o in zip(ys, ort_run(m, [np.asarray(x.data)])):
        close(o, np.asarray(y.data))
    assert {i.name for i in m.graph.initializer} == {"fc.W", "fc.b"}
    assert len(m.graph.output) == 2
    # SINGA's rule: inputs that are not leaves of the graph match the free leaves in DFS order
    y = net.forward(x)[0]
    m = sonnx.to_onnx([t(np.zeros((3, 4), np.float32))], [y])
    assert [i.name for i in m.graph.input] == [x.name]


# --------------------------------------------------------------------------- export: models
def test_mlp(eval_mode):
    l1, l2 = layer.Linear(16), layer.Linear(4)
    x = t(RNG.standard_normal((5, 8)).astype(np.float32))
    y = autograd.softmax(l2(autograd.relu(l1(x))))
    check_export([x], [y])


MnistCNN = mnist_cnn()   # SINGA's examples/cnn model, as examples/mnist_cnn.py defines it


def test_mnist_cnn_export_import_round_trip(eval_mode):
    net = MnistCNN()
    x = t(RNG.standard_normal((2, 1, 28, 28)).astype(np.float32))
    y = net.forward(x)
    m = check_export([x], [y])
    assert [n.op_type for n in m.graph.node] == ["Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool",
                                                  "Flatten", "MatMul", "Add", "Relu", "MatMul", "Add"]
    # round trip: the imported model, exported again, still agrees with onnxruntime
    imported = sonnx.SONNXModel(m)
    imported.eval()
    (z,) = imported(x)
    close(np.asarray(z.data), np.asarray(y.data))
    m2 = sonnx.to_onnx([x], [z])
    close(ort_run(m2, [np.asarray(x.data)])[0], np.asarray(y.data))


class BasicBlock(layer.Layer):
    def __init__(self, planes, stride):
        super().__init__()
        self.conv1 = layer.Conv2d(planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = layer.BatchNorm2d()
        self.conv2 = layer.Conv2d(planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = layer.BatchNorm2d()
        self.stride, self.planes = stride, planes
        if stride != 1:
            self.down = layer.Conv2d(planes, 1, stride=stride, bias=False)
            self.down_bn = layer.BatchNorm2d()

    def forward(self, x):
        y = autograd.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        short = self.down_bn(self.down(x)) if self.stride != 1 else x
        return autograd.relu(autograd.add(y, short))


class ResNet18(model.Model):
    """ResNet-18: 7x7 stem, max pool, BasicBlock x [2, 2, 2, 2], global pool, linear.

    `width` is the stem's channel count (64 in the paper; the stages use w, 2w, 4w, 8w).
    """

    def __init__(self, num_classes=10, width=64):
        super().__init__()
        w = width
        self.conv1 = layer.Conv2d(w, 7, stride=2, padding=3, bias=False)
        self.bn1 = layer.BatchNorm2d()
        self.pool = layer.MaxPool2d(3, 2, padding=1)
        self.blocks = [BasicBlock(c, s) for c, s in [(w, 1), (w, 1), (2 * w, 2), (2 * w, 1),
                                                     (4 * w, 2), (4 * w, 1), (8 * w, 2), (8 * w, 1)]]
        self.fc = layer.Linear(num_classes)

    def forward(self, x):
        y = self.pool(autograd.relu(self.bn1(self.conv1(x))))
        for b in self.blocks:
            y = b(y)
        return self.fc(autograd.flatten(autograd.globalaveragepool(y)))


def test_resnet18_export_import(eval_mode):
    net = ResNet18()
    x = t(RNG.standard_normal((1, 3, 32, 32)).astype(np.float32))
    net.forward(x)   # create the parameters, then give BatchNorm non-trivial statistics
    for name, s in net.get_states().items():
        if name.endswith("running_mean"):
            s.data = s.data + 0.1 * RNG.standard_normal(s.shape).astype(np.float32)
        elif name.endswith("running_var"):
            s.data = s.data * RNG.uniform(0.5, 1.5, s.shape).astype(np.float32)
    y = net.forward(x)
    m = check_export([x], [y])
    types = [n.op_type for n in m.graph.node]
    assert types.count("Conv") == 20 and types.count("BatchNormalization") == 20
    assert len(sonnx.prepare(m).get_params()) == 20 + 2 * 20 + 2


# --------------------------------------------------------------------------- recurrent
RNN_CASES = [
    dict(rnn_mode="lstm", hidden_size=4),
    dict(rnn_mode="lstm", hidden_size=3, num_layers=2, bidirectional=True, return_sequences=False),
    dict(rnn_mode="gru", hidden_size=3, bidirectional=True),
    dict(rnn_mode="relu", hidden_size=3, bias=False, return_sequences=False),
]


@pytest.mark.parametrize("kw", RNN_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_cudnn_rnn_exports_as_onnx_rnn(kw, eval_mode):
    rnn = layer.CudnnRNN(**kw)
    x = t(RNG.standard_normal((2, 5, 3)).astype(np.float32))   # (B, T, F): batch_first
    y = rnn(x)
    m = check_export([x], [y])
    kind = {"lstm": "LSTM", "gru": "GRU", "relu": "RNN"}[kw["rnn_mode"]]
    assert [n.op_type for n in m.graph.node].count(kind) == kw.get("num_layers", 1)


def test_masked_lstm_exports_sequence_lens(eval_mode):
    h = CudnnRNNHandle((5, 3, 2), 4, "lstm", bidirectional=True)
    xs = [t(RNG.standard_normal(s).astype(np.float32)) for s in [(5, 3, 2), (2, 3, 4), (2, 3, 4)]]
    W = t(RNG.uniform(-0.5, 0.5, h.weights_size).astype(np.float32), stores_grad=True)
    lens = np.array([5, 2, 3], np.int32)
    y = autograd._RNN(h, True, True, lens)(*xs, W)[0]
    check_export(xs, [y])


def test_lstm_layer_exports_its_gate_ops(eval_mode):
    lstm = layer.LSTM(3, 4)
    xs = [t(RNG.standard_normal((2, 3)).astype(np.float32)) for _ in range(3)]
    h0, c0 = t(np.zeros((2, 4), np.float32)), t(np.zeros((2, 4), np.float32))
    out, h, c = lstm(xs, (h0, c0))
    m = check_export(xs + [h0, c0], [h, c])
    assert {"MatMul", "Add", "Sigmoid", "Tanh", "Mul"} == {n.op_type for n in m.graph.node}


# --------------------------------------------------------------------------- import: every ONNX op
def f32(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


UNARY = {"Relu": {}, "Sigmoid": {}, "Tanh": {}, "Exp": {}, "Log": dict(lo=0.5, hi=2), "Sqrt": dict(lo=0.5, hi=2),
         "Abs": {}, "Sign": {}, "Neg": {}, "Reciprocal": dict(lo=0.5, hi=2), "Softplus": {}, "Softsign": {},
         "Cos": {}, "Sin": {}, "Tan": {}, "Cosh": {}, "Sinh": {}, "Acos": dict(lo=-0.9, hi=0.9),
         "Asin": dict(lo=-0.9, hi=0.9), "Atan": {}, "Acosh": dict(lo=1.5, hi=3), "Asinh": {},
         "Atanh": dict(lo=-0.9, hi=0.9), "Ceil": dict(lo=-3, hi=3), "Floor": dict(lo=-3, hi=3),
         "Round": dict(lo=-3, hi=3), "Erf": {}, "Identity": {}, "NonZero": {}}


@pytest.mark.parametrize("op_type", sorted(UNARY))
def test_import_unary(op_type):
    x = f32(3, 4, **UNARY[op_type])
    if op_type == "Round":
        x[0, :2] = [0.5, -2.5]   # halves go to even
    if op_type == "NonZero":
        x[x < 0] = 0
    check_import(node_model(op_type, [("x", x)]), [x])


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Pow", "PRelu", "Less", "Greater"])
def test_import_binary_broadcast(op_type):
    a, b = f32(2, 3, 4, lo=0.5, hi=2), f32(3, 1, lo=0.5, hi=2)
    if op_type == "PRelu":
        a, b = f32(2, 3, 4), f32(3, 1)
    check_import(node_model(op_type, [("a", a), ("b", b)]), [a, b])


def test_import_matmul_equal_logic_variadic():
    a, b = f32(2, 3, 4), f32(4, 5)
    check_import(node_model("MatMul", [("a", a), ("b", b)]), [a, b])
    i, j = RNG.integers(0, 3, (3, 4)).astype(np.int64), RNG.integers(0, 3, (4,)).astype(np.int64)
    check_import(node_model("Equal", [("i", i), ("j", j)]), [i, j])
    p, q = RNG.random((3, 4)) > 0.5, RNG.random((3, 4)) > 0.5
    for op_type in ("And", "Or", "Xor"):
        check_import(node_model(op_type, [("p", p), ("q", q)]), [p, q])
    check_import(node_model("Not", [("p", p)]), [p])
    xs = [f32(3, 4), f32(1, 4), f32(3, 1)]
    for op_type in ("Sum", "Mean", "Max", "Min"):
        check_import(node_model(op_type, [("a", xs[0]), ("b", xs[1]), ("c", xs[2])]), xs)


ATTR_CASES = [
    ("LeakyRelu", dict(alpha=0.1)), ("Elu", dict(alpha=0.5)), ("Selu", {}),
    ("HardSigmoid", dict(alpha=0.3, beta=0.4)), ("Flatten", dict(axis=2)), ("Transpose", dict(perm=[2, 0, 3, 1])),
    ("GlobalAveragePool", {}), ("DepthToSpace", dict(blocksize=2, mode="CRD")), ("DepthToSpace", dict(blocksize=2)),
    ("SpaceToDepth", dict(blocksize=2)), ("Softmax", dict(axis=1)), ("Softmax", dict(axis=1, opset=13)),
    ("Softmax", dict(opset=13)), ("LogSoftmax", dict(axis=2, opset=13)), ("Squeeze", dict(axes=[0])),
    ("Unsqueeze", dict(axes=[0, 5])), ("ReduceSum", dict(axes=[1, -1], keepdims=0)), ("ReduceMean", dict(axes=[1])),
    ("ReduceMean", dict(keepdims=0)), ("ReduceMax", dict(axes=[1], keepdims=0)),
    ("Cast", dict(to=TensorProto.INT32)), ("Cast", dict(to=TensorProto.BOOL)),
    ("Dropout", dict(ratio=0.3)), ("Split", dict(axis=3, split=[1, 3])), ("Split", dict(axis=1, outputs=4)),
    ("Concat", dict(axis=3, inputs=2)),
]


@pytest.mark.parametrize("op_type,kw", ATTR_CASES, ids=[f"{o}-{i}" for i, (o, _) in enumerate(ATTR_CASES)])
def test_import_attribute_ops(op_type, kw):
    kw = dict(kw)
    opset, n_out, n_in = kw.pop("opset", 11), kw.pop("outputs", 1), kw.pop("inputs", 1)
    x = f32(1, 4, 2, 4) * 3
    if op_type == "Cast":
        x[0, 0, 0, :2] = 0
    ins = [(f"x{i}", x + i) for i in range(n_in)]
    outs = ["y"] if op_type != "Split" else [f"y{i}" for i in range(n_out if "split" not in kw else 2)]
    check_import(node_model(op_type, ins, outs, opset=opset, **kw), [a for _, a in ins])


VALUE_CASES = [  # inputs that ONNX passes as tensors and singax as attributes
    ("Reshape", [("shape", np.array([0, -1, 2], np.int64))], {}, 11),
    ("Squeeze", [("axes", np.array([-4], np.int64))], {}, 13),
    ("Unsqueeze", [("axes", np.array([-1, 1], np.int64))], {}, 13),
    ("ReduceSum", [("axes", np.array([0, 2], np.int64))], dict(keepdims=1), 13),
    ("ReduceSum", [("axes", np.zeros(0, np.int64))], dict(keepdims=0), 13),
    ("ReduceMean", [("axes", np.array([2], np.int64))], dict(keepdims=0), 18),
    ("Clip", [("min", np.array(-0.2, np.float32)), ("max", np.array(0.4, np.float32))], {}, 11),
    ("Clip", [("", None), ("max", np.array(0.1, np.float32))], {}, 13),
    ("Slice", [("starts", np.array([3, 0], np.int64)), ("ends", np.array([-100, 9], np.int64)),
               ("axes", np.array([2, 1], np.int64)), ("steps", np.array([-2, 2], np.int64))], {}, 11),
    ("Tile", [("repeats", np.array([1, 2, 1, 3], np.int64))], {}, 11),
    ("Expand", [("shape", np.array([2, 1, 1, 4], np.int64))], {}, 11),
    ("Gather", [("indices", np.array([[0, 3], [-1, 1]], np.int64))], dict(axis=3), 11),
    ("Gather", [("indices", np.array(1, np.int64))], dict(axis=1), 11),
    ("Pad", [("pads", np.array([0, 1, 2, 0, 0, 0, 1, 3], np.int64)), ("value", np.array(0.5, np.float32))],
     dict(mode="constant"), 11),
    ("Pad", [("pads", np.array([0, 0, 2, 1, 0, 1, 1, 3], np.int64))], dict(mode="edge"), 11),
    ("Pad", [("pads", np.array([0, 0, 1, 1, 0, 1, 1, 3], np.int64))], dict(mode="reflect"), 11),
    ("Pad", [("pads", np.array([1, 2, 0, 1], np.int64)), ("", None), ("axes", np.array([1, 3], np.int64))],
     dict(mode="constant"), 18),
    ("Resize", [("roi", np.zeros(0, np.float32)), ("scales", np.array([1, 1, 2, 3], np.float32))],
     dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), 11),
    ("Resize", [("roi", np.zeros(0, np.float32)), ("scales", np.zeros(0, np.float32)),
                ("sizes", np.array([1, 4, 3, 7], np.int64))], dict(mode="nearest"), 13),
    ("ScatterElements", [("indices", np.array([[[[1, 0, 3]]]], np.int64)),
                         ("updates", np.array([[[[5.0, 6.0, 7.0]]]], np.float32))], dict(axis=3), 11),
    ("Split", [("split", np.array([3, 1], np.int64))], dict(axis=3), 13),
    ("Dropout", [("ratio", np.array(0.2, np.float32))], {}, 13),
]


@pytest.mark.parametrize("op_type,values,kw,opset", VALUE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(VALUE_CASES)])
def test_import_value_inputs(op_type, values, kw, opset):
    x = f32(1, 4, 2, 4) * 3
    inputs = [("x", x)] + [(n, a) for n, a in values]
    outs = ["y0", "y1"] if op_type == "Split" else ["y"]
    m = node_model(op_type, inputs, outs, opset=opset, inits=[n for n, _ in values if n], **kw)
    check_import(m, [x])


def test_import_onehot_where_constant_of_shape_shape():
    idx = np.array([[0, 2], [1, 3]], np.int64)
    m = node_model("OneHot", [("i", idx), ("depth", np.array(4, np.int64)), ("values", np.array([-1.0, 2.0], np.float32))],
                   inits=["depth", "values"], axis=1)
    check_import(m, [idx])
    x, y = f32(2, 3), f32(2, 3)
    cond = np.array([[True, False, True], [False, False, True]])
    check_import(node_model("Where", [("c", cond), ("a", x), ("b", y)], inits=["c"]), [x, y])
    check_import(node_model("Where", [("c", cond), ("a", x), ("b", y)]), [cond, x, y])   # computed condition
    value = numpy_helper.from_array(np.array([7], np.int64), "value")
    check_import(node_model("ConstantOfShape", [("s", np.array([2, 3], np.int64))], inits=["s"], value=value), [])
    check_import(node_model("Shape", [("x", x)]), [x])


def test_import_castlike_takes_the_second_inputs_type():
    x = np.array([[1.7, -2.5, 0.2]], np.float32)
    check_import(node_model("CastLike", [("x", x), ("like", np.zeros(1, np.int32))], opset=15), [x, np.zeros(1, np.int32)])
    got = sonnx.prepare(node_model("CastLike", [("x", x), ("like", np.zeros(1, np.int32))], opset=15)).run(
        [x, np.zeros(1, np.int32)])[0]
    assert got.dtype == np.int32 and got.tolist() == [[1, -2, 0]]


def test_import_gather_with_computed_indices_is_a_lookup():
    table, ids = f32(6, 3), RNG.integers(0, 6, (2, 4)).astype(np.int64)
    m = node_model("Gather", [("table", table), ("ids", ids)], inits=["table"], axis=0)
    check_import(m, [ids])
    rep = sonnx.prepare(m)
    assert list(rep.get_params()) == ["table"]


CONV_CASES = [
    dict(pads=[1, 2, 0, 1], strides=[2, 1]),
    dict(dilations=[2, 2], group=2, pads=[2, 2, 2, 2], bias=False),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(auto_pad="VALID", kernel_shape=[3, 3]),
]


@pytest.mark.parametrize("kw", CONV_CASES)
def test_import_conv(kw):
    kw = dict(kw)
    bias = kw.pop("bias", True)
    g = kw.get("group", 1)
    x, W, b = f32(2, 4, 7, 6), f32(6, 4 // g, 3, 3), f32(6)
    ins = [("x", x), ("W", W)] + ([("b", b)] if bias else [])
    m = node_model("Conv", ins, inits=["W", "b"], **kw)
    check_import(m, [x])


POOL_CASES = [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1])),
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 2], auto_pad="SAME_UPPER", strides=[2, 2])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[0, 1, 2, 0])),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2])),
]


@pytest.mark.parametrize("op_type,kw", POOL_CASES)
def test_import_pooling(op_type, kw):
    x = f32(2, 3, 7, 7)
    check_import(node_model(op_type, [("x", x)], **kw), [x])


@pytest.mark.parametrize("kw", [dict(), dict(transA=1, transB=1, alpha=0.5, beta=2.0), dict(no_c=True)])
def test_import_gemm(kw):
    kw = dict(kw)
    no_c = kw.pop("no_c", False)
    a = f32(4, 3) if kw.get("transA") else f32(3, 4)
    b = f32(5, 4) if kw.get("transB") else f32(4, 5)
    ins = [("a", a), ("b", b)] + ([] if no_c else [("c", f32(5))])
    check_import(node_model("Gemm", ins, inits=["b", "c"], **kw), [a])


def test_import_batchnorm_uses_epsilon_and_momentum():
    x = f32(2, 3, 4, 4)
    ps = [("scale", f32(3)), ("B", f32(3)), ("mean", f32(3)), ("var", f32(3, lo=0.5, hi=1.5))]
    m = node_model("BatchNormalization", [("x", x)] + ps, inits=[n for n, _ in ps], epsilon=1e-2, momentum=0.8)
    check_import(m, [x])
    rep = sonnx.prepare(m)
    assert set(rep.get_params()) == {"scale", "B"}   # mean/var are buffers
    assert not rep.states["mean"].stores_grad
    autograd.training = True
    rep.run([x])
    bn = rep.layers[0][1].operator
    assert bn.handle.factor == pytest.approx(0.2)   # SINGA's factor = 1 - ONNX momentum
    batch_mean = x.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(np.asarray(rep.states["mean"].data), 0.8 * ps[2][1] + 0.2 * batch_mean, rtol=1e-5)


RECURRENT_CASES = [
    ("LSTM", dict(direction="forward"), True, True),
    ("LSTM", dict(direction="bidirectional"), False, True),
    ("GRU", dict(direction="bidirectional", linear_before_reset=1), True, True),
    ("RNN", dict(activations=["Relu"]), True, False),
]


@pytest.mark.parametrize("op_type,kw,bias,state", RECURRENT_CASES)
def test_import_recurrent(op_type, kw, bias, state):
    T, B, F, H = 4, 2, 3, 5
    D = 2 if kw.get("direction") == "bidirectional" else 1
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op_type]
    x = f32(T, B, F)
    ins = [("x", x), ("W", f32(D, G * H, F)), ("R", f32(D, G * H, H))]
    ins.append(("B", f32(D, 2 * G * H)) if bias else ("", None))
    ins += [("", None), ("h0", f32(D, B, H))] if state else []
    inits = ["W", "R", "B", "h0"]
    m = node_model(op_type, [i for i in ins], ["y", "yh"], hidden_size=H, inits=inits, **kw)
    check_import(m, [x])


def test_import_lstm_with_sequence_lens():
    T, B, F, H = 4, 3, 2, 3
    x = f32(T, B, F)
    ins = [("x", x), ("W", f32(1, 4 * H, F)), ("R", f32(1, 4 * H, H)), ("B", f32(1, 8 * H)),
           ("lens", np.array([4, 1, 2], np.int32))]
    m = node_model("LSTM", ins, ["y"], hidden_size=H, inits=["W", "R", "B", "lens"])
    check_import(m, [x])


# --------------------------------------------------------------------------- import: graphs and models
def shape_reshape_model():
    """Flatten written as Shape -> Gather -> Unsqueeze -> Concat -> Reshape, then Gemm + BN + Relu."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "b"], ["h"], transB=1),
        helper.make_node("BatchNormalization", ["h4", "g", "beta", "mean", "var"], ["hn"]),
        helper.make_node("Relu", ["hn2"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["logits"]),
    ]
    # BatchNormalization wants 4-d or 2-d; keep it 2-d
    nodes[7] = helper.make_node("BatchNormalization", ["h", "g", "beta", "mean", "var"], ["hn"])
    nodes[8] = helper.make_node("Relu", ["hn"], ["r"])
    inits = dict(ax=np.array([0], np.int64), minus1=np.array([-1], np.int64),
                 W=f32(16, 12) * 0.5, b=f32(16), g=f32(16, lo=0.5, hi=1.5), beta=f32(16), mean=f32(16) * 0.1,
                 var=f32(16, lo=0.5, hi=1.5), W2=f32(16, 3) * 0.5, b2=f32(3))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_import_graph_with_shape_arithmetic():
    m = shape_reshape_model()
    x = f32(5, 3, 2, 2)
    check_import(m, [x])
    rep = sonnx.prepare(m)
    assert set(rep.get_params()) == {"W", "b", "g", "beta", "W2", "b2"}
    # last_layers and aux_output (SINGA's run options)
    hidden, aux = rep.run([x], last_layers=-1, aux_output=["flat"])
    close(hidden, np.maximum(ort_outputs(m, x, "hn"), 0))
    close(aux, x.reshape(5, 12))


def ort_outputs(m, x, name):
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    m2.graph.output.append(helper.make_empty_tensor_value_info(name))
    return ort_run(m2, [x])[-1]


class FineTune(sonnx.SONNXModel):
    def __init__(self, m, lr=0.1):
        super().__init__(m)
        self.optimizer = opt.SGD(lr=lr, momentum=0.9)

    def forward(self, x):
        return super().forward(x)[0]

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = autograd.softmax_cross_entropy(out, y)
        self.optimizer(loss)
        return out, loss


@pytest.mark.parametrize("use_graph", [False, True])
def test_fine_tune_imported_model(use_graph, tmp_path):
    m = shape_reshape_model()
    x = RNG.standard_normal((16, 3, 2, 2)).astype(np.float32)
    labels = (x.reshape(16, -1)[:, :3].argmax(1)).astype(np.int32)
    net = FineTune(m)
    assert set(net.get_params()) == {"W", "b", "g", "beta", "W2", "b2"}
    assert {"mean", "var"} <= set(net.get_states())
    tx, ty = t(x), t(labels)
    net.compile([tx], is_train=True, use_graph=use_graph)
    before = np.asarray(net.get_states()["mean"].data).copy()
    losses = [float(tensor.to_numpy(net(tx, ty)[1])[0]) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0], losses
    assert not np.allclose(np.asarray(net.get_states()["mean"].data), before)   # BN statistics moved
    path = str(tmp_path / "ckpt.zip")
    net.save_states(path)
    net2 = FineTune(m)
    net2.load_states(path)
    net.eval()
    net2.eval()
    close(np.asarray(net2(tx).data), np.asarray(net(tx).data))   # compiled eval forward in graph mode


def test_fine_tune_with_a_new_head(eval_mode):
    class Head(sonnx.SONNXModel):
        def __init__(self, m):
            super().__init__(m)
            self.head = layer.Linear(2)
            self.optimizer = opt.SGD(lr=0.05)

        def forward(self, x):
            feat = super().forward(x, aux_output=["r"])[1]
            return self.head(feat)

        def train_one_batch(self, x, y):
            out = self.forward(x)
            loss = autograd.softmax_cross_entropy(out, y)
            self.optimizer(loss)
            return out, loss

    net = Head(shape_reshape_model())
    x = t(RNG.standard_normal((8, 3, 2, 2)).astype(np.float32))
    y = t((np.asarray(x.data).reshape(8, -1)[:, 0] > 0).astype(np.int32))
    net.compile([x], is_train=True, use_graph=False)
    losses = [float(tensor.to_numpy(net(x, y)[1])[0]) for _ in range(12)]
    assert losses[-1] < losses[0]
    assert {"head.W", "head.b", "W", "W2"} <= set(net.get_params())


def test_run_node_get_op_and_backend():
    out = sonnx.run_node(helper.make_node("Relu", ["x"], ["y"]), [np.array([-1.0, 2.0], np.float32)])
    assert list(out) == ["y"] and np.asarray(out["y"].data).tolist() == [0.0, 2.0]
    out = sonnx.run_node(helper.make_node("Reshape", ["x", "s"], ["y"]),
                         [np.arange(6, dtype=np.float32), np.array([2, -1], np.int64)])
    assert out["y"].shape == (2, 3)
    op = sonnx.get_op(helper.make_node("Gemm", ["a", "b"], ["y"], transB=1), 11)
    assert type(op.operator).__name__ == "Gemm" and op.operator.transB == 1
    m = node_model("Tanh", [("x", f32(2, 2))])
    x = f32(2, 2)
    close(sonnx.SingaBackend.run_model(m, [x])[0], np.tanh(x))
    assert sonnx.SingaBackend.supports_device("CPU")
    node = sonnx.OnnxNode(helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.3, name="lr"))
    assert node.name == "lr" and node.attrs == {"alpha": pytest.approx(0.3)} and node.inputs == ["x"]
    assert sonnx.load is onnx.load and sonnx.save is onnx.save


LIGHT = __import__("pathlib").Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.parametrize("name", ["squeezenet", "resnet50"])
def test_import_model_files_shipped_with_onnx(name):
    """The 'light' model files in the onnx wheel: opset 9 (converted), weights from ConstantOfShape."""
    path = LIGHT / f"light_{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} is not in this onnx release")
    m = onnx.load(str(path))
    want = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    rep = sonnx.prepare(m)
    x = RNG.standard_normal([d or 1 for d in rep.inputs[0].shape]).astype(np.float32)
    hidden = [n for n, _ in rep.layers if n.op_type == "Relu"][-1].outputs[0]   # varies with x
    out, feat = rep.run([x], aux_output=[hidden])
    close(out, want)
    ref_out, ref_feat = ort_outputs_all(m, x, hidden)
    close(out, ref_out)
    close(feat, ref_feat)


def ort_outputs_all(m, x, name):
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    m2.graph.output.append(helper.make_empty_tensor_value_info(name))
    return ort_run(m2, [x])


def test_old_opset_is_converted():
    x = f32(1, 2, 3, 3)
    m = node_model("Upsample", [("x", x), ("scales", np.array([1, 1, 2, 2], np.float32))], opset=9,
                   inits=["scales"], mode="nearest")
    rep = sonnx.prepare(m)
    assert rep.opset == 11
    np.testing.assert_array_equal(rep.run([x])[0], x.repeat(2, axis=2).repeat(2, axis=3))


# --------------------------------------------------------------------------- bad input
def test_unsupported_op_is_named_with_the_supported_list():
    m = node_model("TopK", [("x", f32(3, 4)), ("k", np.array([2], np.int64))], ["v", "i"], inits=["k"])
    with pytest.raises(ValueError, match=r"'the_topk' \(op type TopK\): not supported. Supported op types: Abs, .*Relu"):
        sonnx.prepare(m)
    m = node_model("Conv", [("x", f32(1, 1, 3, 3)), ("W", f32(1, 1, 2, 2))], inits=["W"])
    m.graph.node[0].domain = "com.example"
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(ValueError, match=r"'the_conv'.*domain 'com.example'"):
        sonnx.prepare(m)


def test_unsupported_attributes_are_named():
    m = node_model("LSTM", [("x", f32(2, 1, 3)), ("W", f32(1, 8, 3)), ("R", f32(1, 8, 2))], hidden_size=2,
                   direction="reverse", inits=["W", "R"])
    with pytest.raises(ValueError, match=r"'the_lstm' \(op type LSTM\): direction 'reverse'"):
        sonnx.prepare(m)
    m = node_model("Conv", [("x", f32(1, 1, 3, 3, 3)), ("W", f32(1, 1, 2, 2, 2))], inits=["W"])
    rep = sonnx.prepare(m)
    with pytest.raises(ValueError, match=r"'the_conv' \(op type Conv\).*only 2-D convolution"):
        rep.run([f32(1, 1, 3, 3, 3)])


def test_malformed_model():
    m = node_model("Relu", [("x", f32(2))])
    m.graph.node[0].input[0] = "nowhere"
    with pytest.raises(ValueError, match="malformed ONNX model"):
        sonnx.prepare(m)
    with pytest.raises(ValueError, match="malformed|parse|Error"):
        sonnx.prepare(b"not a model")
    with pytest.raises(TypeError, match="expected an onnx.ModelProto"):
        sonnx.prepare(42)


def test_mismatched_inputs():
    m = shape_reshape_model()
    rep = sonnx.prepare(m)
    with pytest.raises(ValueError, match=r"input 'x' must have rank 4 \(the model declares shape "
                                         r"\('\?', 3, 2, 2\)\), got shape \(5, 12\)"):
        rep.run([f32(5, 12)])
    with pytest.raises(ValueError, match="takes 1 input"):
        rep.run([f32(5, 3, 2, 2), f32(1)])
    ints = np.arange(60).reshape(5, 3, 2, 2) % 3
    np.testing.assert_allclose(rep.run([ints.astype(np.int64)])[0], rep.run([ints.astype(np.float32)])[0])
    # a shape the graph declares as free, that a node then rejects: the node is named
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="proj")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                          initializer=[numpy_helper.from_array(f32(4, 2), "W")])
    rep = sonnx.prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]))
    with pytest.raises(ValueError, match=r"node 'proj' \(op type MatMul\) failed.*\(3, 5\), \(4, 2\)"):
        rep.run([f32(3, 5)])


def test_inputs_follow_singa_not_the_declared_sizes_or_number_kind():
    """Zoo models declare batch 1 and take token ids in float Tensors (SINGA checks neither)."""
    emb = f32(10, 4)
    g = helper.make_graph(
        [helper.make_node("Gather", ["E", "ids"], ["e"], axis=0),
         helper.make_node("ReduceSum", ["e"], ["y"], axes=[2], keepdims=0)], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(emb, "E")])
    rep = sonnx.prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]))
    ids = np.array([[1, 7, 0], [9, 2, 2]])
    want = emb[ids].sum(axis=2)
    np.testing.assert_allclose(rep.run([ids])[0], want, rtol=1e-6)  # batch 2 against a declared 1
    np.testing.assert_allclose(rep.run([ids.astype(np.float32)])[0], want, rtol=1e-6)
    np.testing.assert_allclose(rep.run([t(ids.astype(np.float32))])[0], want, rtol=1e-6)
    with pytest.raises(TypeError, match=r"input 'ids' is an integer input \(int32\); got float32 values "
                                        r"that are not whole numbers"):
        rep.run([np.array([[1.5, 2, 3]], np.float32)])
    with pytest.raises(TypeError, match="not whole numbers"):
        rep.run([np.array([[np.nan, 2, 3]], np.float32)])

    class Ids(sonnx.SONNXModel):
        def forward(self, *x):
            return super().forward(*x)[0]

        def train_one_batch(self, x):  # traced by Model.compile: the ids arrive as a tracer
            return self.forward(x)

    m = Ids(helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]))
    x = t(ids.astype(np.float32))
    m.compile([x], is_train=True, use_graph=True)
    np.testing.assert_allclose(tensor.to_numpy(m.train_one_batch(x)), want, rtol=1e-6)


def test_export_errors(eval_mode):
    x = t(f32(3, 4))
    W = t(f32(4, 2), stores_grad=True)
    y = autograd.matmul(x, W)
    loss = autograd.softmax_cross_entropy(y, t(np.array([0, 1, 1], np.int32)))
    with pytest.raises(ValueError, match=r"SoftMaxCrossEntropy.*loss.*export the model output"):
        sonnx.to_onnx([x], [loss])

    class Twice(autograd.Operator):
        def forward(self, a):
            return a * 2

    z = Twice()(y)[0]
    with pytest.raises(ValueError, match=r"Twice#\d+ \(Twice\) has no ONNX export; exportable operators: .*ReLU"):
        sonnx.to_onnx([x], [z])
    with pytest.warns(UserWarning, match=r"input 1 \(shape \(2,\)\) is not used .* left out"):
        m = sonnx.to_onnx([x, t(f32(2))], [y])
    assert len(m.graph.input) == 1
    with pytest.raises(TypeError, match="inputs must be Tensors .*; item 1 is str"):
        sonnx.to_onnx([x, "a"], [y])
    with pytest.raises(TypeError, match="outputs must be Tensors"):
        sonnx.to_onnx([x], [np.zeros(2)])


def test_docs_list_every_operator():
    import pathlib
    text = (pathlib.Path(__file__).parent.parent / "docs" / "onnx.md").read_text()
    missing = [n for n in list(sonnx.EXPORTERS) + sonnx.supported_ops() if f"`{n}`" not in text]
    assert not missing, f"docs/onnx.md does not mention {missing}"


def test_backend_api_returns_declared_output_types_and_lists_singa_ops():
    from onnx.backend.base import Backend
    assert issubclass(sonnx.SingaBackend, Backend)
    assert set(sonnx.SingaBackend._rename_operators) <= set(sonnx.supported_ops())
    assert sonnx.SingaBackend._rename_operators["Relu"] == "ReLU"
    node = helper.make_node("Less", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.INT64, [3])
                                            for n in "ab"],
                              [helper.make_tensor_value_info("y", TensorProto.BOOL, [3])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert sonnx.SingaBackend.is_compatible(m)
    a, b = np.array([1, 5, 3], np.int64), np.array([2, 5, 1], np.int64)
    (y,) = sonnx.SingaBackend.prepare(m).run([a, b])
    assert y.dtype == np.bool_ and y.tolist() == [True, False, False]
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.COMPLEX64
    assert not sonnx.SingaBackend.is_compatible(m)


def test_backend_prepare_is_a_singa_rep_that_keeps_aux_outputs():
    W = f32(4, 3)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["o"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("o", TensorProto.FLOAT, [2, 3])],
                          initializer=[numpy_helper.from_array(W, "W")])
    rep = sonnx.SingaBackend.prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]))
    assert isinstance(rep, sonnx.SingaRep) and sorted(rep.states) == ["W"] and len(rep.layers) == 2
    x = f32(2, 4)
    o, h = rep.run([x], aux_output=["h"])
    np.testing.assert_allclose(h, x @ W, rtol=1e-5)
    np.testing.assert_allclose(o, np.maximum(x @ W, 0), rtol=1e-5)


def test_export_of_outputs_without_recorded_operations_is_refused():
    x = t(f32(2, 4))
    y = x + t(f32(2, 4))            # a Python operator records nothing
    with pytest.raises(ValueError, match="to_onnx: the outputs have no recorded operations"):
        sonnx.to_onnx([x], [y])


def test_int64_values_int32_cannot_hold_are_refused_not_clipped():
    g = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.INT64, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, [3])],
                          initializer=[numpy_helper.from_array(np.array([2 ** 40, 3, 1], np.int64), "c")])
    rep = sonnx.prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]))
    with pytest.raises(ValueError, match="constant 'c': int64 value 1099511627776 is outside int32"):
        rep.run([np.array([1, 2, 3])])
    with pytest.raises(ValueError, match="input 'x': int64 value -34359738368 is outside int32"):
        rep.run([np.array([-2 ** 35, 2, 3])])


def test_run_node_does_not_read_external_data_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(np.array([4.5e30], np.float32).tobytes())
    value = TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
    value.external_data.add(key="location", value="secret.bin")
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], value=value)
    with pytest.raises(ValueError, match="attribute 'value' refers to external data"):
        sonnx.run_node(node, [np.array([2])])
