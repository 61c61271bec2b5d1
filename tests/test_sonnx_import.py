"""ONNX import semantics beyond the exported operator set: casts to every numeric
element type, newer opsets, and the value-dependent operators."""
import ml_dtypes
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from singax import sonnx  # noqa: E402
from singax.autograd import check_grads  # noqa: E402
from singax.tensor import Tensor  # noqa: E402


def _model(nodes, inputs, outputs, opset=28, initializers=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model, *xs):
    return sonnx.SingaBackend.prepare(model).run(list(xs))


def _cast(x, to, opset=28, **attrs):
    node = helper.make_node("Cast", ["x"], ["y"], to=to, **attrs)
    m = _model([node], [("x", helper.np_dtype_to_tensor_dtype(x.dtype), list(x.shape))], [("y", to, list(x.shape))],
               opset)
    return _run(m, x)[0]


F8_MAX = {TensorProto.FLOAT8E4M3FN: 448.0, TensorProto.FLOAT8E5M2: 57344.0, TensorProto.FLOAT8E4M3FNUZ: 240.0}


@pytest.mark.parametrize("to", list(F8_MAX))
def test_cast_to_float8_saturates_by_default(to):
    x = np.array([0.4789, 1e6, -1e6, np.inf, -np.inf, np.nan, 3.3], np.float32)
    y = _cast(x, to)
    big = F8_MAX[to]
    assert y.dtype == helper.tensor_dtype_to_np_dtype(to)
    got = y.astype(np.float32)
    np.testing.assert_array_equal(got[1:5], [big, -big, big, -big])
    assert np.isnan(got[5])
    # in range: round to nearest even on the type's grid
    want = np.array([0.4789, 3.3], np.float32).astype(y.dtype).astype(np.float32)
    np.testing.assert_array_equal(got[[0, 6]], want)
    assert got[0] != np.float32(0.4789)


def test_cast_without_saturate_gives_nan_or_inf_out_of_range():
    x = np.array([1e6, -np.inf, 0.5], np.float32)
    e4 = _cast(x, TensorProto.FLOAT8E4M3FN, saturate=0).astype(np.float32)
    assert np.isnan(e4[0]) and np.isnan(e4[1]) and e4[2] == 0.5
    e5 = _cast(x, TensorProto.FLOAT8E5M2, saturate=0).astype(np.float32)
    assert e5[0] == np.inf and e5[1] == -np.inf and e5[2] == 0.5


def test_cast_to_small_integers_truncates_and_follows_onnx_reference():
    x = np.array([-9.0, -8.0, 7.9, 8.0, 2.5, -2.5], np.float32)
    assert _cast(x, TensorProto.INT4).astype(np.int32).tolist() == [0, -8, 7, 0, 2, -2]
    assert _cast(x, TensorProto.UINT4).astype(np.int32).tolist() == [0, 0, 7, 8, 2, 0]
    # from an integer type, higher bits are discarded (two's complement)
    ints = np.array([-9, 8, 300, -1], np.int32)
    assert _cast(ints, TensorProto.INT4).astype(np.int32).tolist() == [7, -8, -4, -1]
    assert _cast(ints, TensorProto.UINT8).tolist() == [247, 8, 44, 255]
    assert _cast(ints, TensorProto.INT8).tolist() == [-9, 8, 44, -1]


def test_small_types_read_as_graph_inputs():
    x = np.array([-2, -1, 0, 1], ml_dtypes.int2)
    assert _cast(x, TensorProto.FLOAT).tolist() == [-2.0, -1.0, 0.0, 1.0]
    b = np.array([1.5, -0.1, 3e38], np.float32).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(_cast(b, TensorProto.FLOAT), b.astype(np.float32))


def test_cast_rounds_intermediate_values_to_the_narrow_type():
    """A value cast to float16 and back differs from the float32 input by float16's rounding."""
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
             helper.make_node("Sub", ["x", "hf"], ["y"])]
    m = _model(nodes, [("x", TensorProto.FLOAT, [3])], [("y", TensorProto.FLOAT, [3])])
    x = np.array([1 / 3, 1000.1, 0.5], np.float32)
    (y,) = _run(m, x)
    np.testing.assert_array_equal(y, x - x.astype(np.float16).astype(np.float32))
    assert y[0] != 0 and y[2] == 0


@pytest.mark.parametrize("mode,want", [("up", [0.125, 2.0, 2.0, 0.5]), ("down", [0.0625, 1.0, 2.0, 0.5]),
                                       ("nearest", [0.125, 1.0, 2.0, 0.5])])
def test_cast_to_e8m0_rounds_by_round_mode(mode, want):
    x = np.array([0.124, 1.1, 2.0, 0.5], np.float32)
    y = _cast(x, TensorProto.FLOAT8E8M0, round_mode=mode)
    assert y.dtype == ml_dtypes.float8_e8m0fnu
    assert y.astype(np.float32).tolist() == want


def test_castlike_takes_the_declared_type_of_its_second_input():
    node = helper.make_node("CastLike", ["x", "like"], ["y"])
    m = _model([node], [("x", TensorProto.FLOAT, [3]), ("like", TensorProto.FLOAT8E5M2, [1])],
               [("y", TensorProto.FLOAT8E5M2, [3])])
    x = np.array([0.3, 1e6, 5.1], np.float32)
    (y,) = _run(m, x, np.zeros(1, ml_dtypes.float8_e5m2))
    np.testing.assert_array_equal(y.astype(np.float32), [0.3125, 57344.0, 5.0])


def test_cast_to_unsupported_type_is_refused_by_name():
    with pytest.raises(ValueError, match="cast to STRING is not supported"):
        _cast(np.zeros(2, np.float32), TensorProto.STRING)


def test_newer_opsets_are_read_directly():
    """An opset-28 model imports without the version converter."""
    node = helper.make_node("Relu", ["x"], ["y"])
    m = _model([node], [("x", TensorProto.FLOAT, [3])], [("y", TensorProto.FLOAT, [3])], opset=28)
    rep = sonnx.prepare(m)
    assert rep.opset == 28
    np.testing.assert_array_equal(rep.run([np.array([-1.0, 0.0, 2.0], np.float32)])[0], [0.0, 0.0, 2.0])


def _imported(op_type, opset=18, **attrs):
    inputs = {"Gather": ["x", "i"], "ScatterElements": ["x", "i", "u"], "BatchNormalization": list("xsbmv")}
    outs = ["y", "mean", "var"] if op_type == "BatchNormalization" else ["y"]
    return sonnx.get_op(helper.make_node(op_type, inputs[op_type], outs, **attrs), opset)


def _t(a, **kw):
    return Tensor(data=np.asarray(a), dtype=np.asarray(a).dtype, **kw)


def test_reshape_allowzero_keeps_zero_dims_and_copies_without_it():
    node = helper.make_node("Reshape", ["x", "s"], ["y"], allowzero=1)
    m = _model([node], [("x", TensorProto.FLOAT, [0, 3, 4]), ("s", TensorProto.INT64, [3])],
               [("y", TensorProto.FLOAT, ["a", "b", "c"])])
    (y,) = _run(m, np.zeros((0, 3, 4), np.float32), np.array([3, 4, 0], np.int64))
    assert y.shape == (3, 4, 0)
    (y,) = _run(m, np.zeros((0, 3, 4), np.float32), np.array([4, 3, 0], np.int64))
    assert y.shape == (4, 3, 0)
    m2 = _model([node], [("x", TensorProto.FLOAT, [2, 3]), ("s", TensorProto.INT64, [2])],
                [("y", TensorProto.FLOAT, ["a", "b"])])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(_run(m2, x, np.array([3, 2], np.int64))[0], x.reshape(3, 2))
    with pytest.raises(ValueError, match="allowzero=1 the target \\[0, 6\\]"):
        _run(m2, x, np.array([0, 6], np.int64))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_with_computed_indices_on_any_axis(axis):
    x = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    idx = np.array([[0, -1], [1, 1]], np.int32)
    imp = _imported("Gather", axis=axis)
    (y,) = imp(_t(x), _t(idx, requires_grad=False))
    n = x.shape[axis]
    np.testing.assert_allclose(np.asarray(y.data), np.take(x, np.where(idx < 0, idx + n, idx), axis=axis))
    check_grads(lambda t: imp(t, _t(idx, requires_grad=False))[0], _t(x))


@pytest.mark.parametrize("reduction", ["add", "mul", "max", "min"])
def test_scatter_elements_reductions_combine_repeated_indices(reduction):
    x = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], np.float32)
    idx = np.array([[1, 1, -1], [0, 2, 0]], np.int64)
    upd = np.array([[1.5, -2.0, 3.0], [4.0, 0.5, 9.0]], np.float32)
    (y,) = _imported("ScatterElements", axis=1, reduction=reduction)(_t(x), idx, upd)
    want = x.copy()
    ufunc = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[reduction]
    for r, c in np.ndindex(*idx.shape):
        col = idx[r, c] % 4
        want[r, col] = ufunc(want[r, col], upd[r, c])
    np.testing.assert_allclose(np.asarray(y.data), want)


def test_scatter_elements_mul_gradient():
    idx = np.array([[1, 1, 0]], np.int64)
    upd = np.array([[1.0, 2.0, 3.0]], np.float32)
    imp = _imported("ScatterElements", axis=1, reduction="mul")
    check_grads(lambda t: imp(t, idx, upd)[0], _t(np.array([[0.5, 2.0, -1.0]], np.float32)))


def test_onehot_out_of_range_indices_give_off_rows():
    node = helper.make_node("OneHot", ["i", "d", "v"], ["y"], axis=0)
    m = _model([node], [("i", TensorProto.INT64, [4]), ("d", TensorProto.FLOAT, [1]),
                        ("v", TensorProto.FLOAT, [2])], [("y", TensorProto.FLOAT, [3, 4])])
    (y,) = _run(m, np.array([0, -1, 3, -4], np.int64), np.array([3.0], np.float32),
                np.array([-1.0, 2.0], np.float32))
    np.testing.assert_array_equal(y, [[2, -1, -1, -1], [-1, -1, -1, -1], [-1, 2, -1, -1]])


def test_batchnorm_training_mode_outputs_batch_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    s, b = rng.normal(size=3).astype(np.float32), rng.normal(size=3).astype(np.float32)
    mean, var = rng.normal(size=3).astype(np.float32), rng.uniform(1, 2, size=3).astype(np.float32)
    imp = _imported("BatchNormalization", opset=15, training_mode=1, momentum=0.8, epsilon=1e-3)
    y, m, v = imp(*[_t(a) for a in (x, s, b, mean, var)])
    bm, bv = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    r = (1, 3, 1, 1)
    want = (x - bm.reshape(r)) / np.sqrt(bv.reshape(r) + 1e-3) * s.reshape(r) + b.reshape(r)
    np.testing.assert_allclose(np.asarray(y.data), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(m.data), 0.8 * mean + 0.2 * bm, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(v.data), 0.8 * var + 0.2 * bv, rtol=1e-5)
    check_grads(lambda t: imp(t, *[_t(a, requires_grad=False) for a in (s, b, mean, var)])[0] * _t(x),
                _t(x))


@pytest.mark.parametrize("split,keepdims,want", [(None, 1, [(1, 3)] * 4), (None, 0, [(3,)] * 4),
                                                  (3, 1, [(3, 3), (1, 3)]), ([1, 3], 1, [(1, 3), (3, 3)])])
def test_split_to_sequence_gives_a_list_of_pieces(split, keepdims, want):
    ins = [("x", TensorProto.FLOAT, [4, 3])]
    names = ["x"]
    inits = []
    if split is not None:
        inits = [helper.make_tensor("s", TensorProto.INT64, [] if np.ndim(split) == 0 else [len(split)],
                                    np.atleast_1d(split).tolist())]
        names.append("s")
    node = helper.make_node("SplitToSequence", names, ["seq"], axis=0, keepdims=keepdims)
    at = helper.make_node("SequenceAt", ["seq", "one"], ["second"])
    one = helper.make_tensor("one", TensorProto.INT64, [], [1])
    dims = ["n", "m"][:len(want[0])]
    seq_out = helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, dims)
    graph = helper.make_graph([node, at], "g", [helper.make_tensor_value_info(*i) for i in ins],
                              [seq_out, helper.make_tensor_value_info("second", TensorProto.FLOAT, dims)],
                              initializer=inits + [one])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    seq, second = _run(m, x)
    assert [p.shape for p in seq] == want
    np.testing.assert_array_equal(np.concatenate([p.reshape(-1, 3) for p in seq]), x)
    np.testing.assert_array_equal(second, seq[1])


def test_identity_passes_sequences_and_empty_optionals():
    seq_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    opt_type = helper.make_optional_type_proto(seq_type)
    node = helper.make_node("Identity", ["a"], ["b"])
    graph = helper.make_graph([node], "g", [helper.make_value_info("a", opt_type)],
                              [helper.make_value_info("b", opt_type)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    seq = [np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0], np.float32)]
    (out,) = _run(m, seq)
    assert len(out) == 2 and all(np.array_equal(o, s) for o, s in zip(out, seq))
    assert _run(m, None) == [None]
    with pytest.raises(TypeError, match="is a sequence: pass a list"):
        _run(m, seq[0])


def test_castlike_without_a_known_type_follows_the_held_dtype():
    imp = sonnx.get_op(helper.make_node("CastLike", ["x", "like"], ["y"]), 18)
    x = _t(np.array([2.7, -2.7, 0.5], np.float32))
    (y,) = imp(x, Tensor(data=np.array([1], np.int32), dtype=np.int32))
    assert np.asarray(y.data).tolist() == [2, -2, 0]
    (y,) = imp(x, _t(np.array([1.0], np.float32)))
    np.testing.assert_array_equal(np.asarray(y.data), np.array([2.7, -2.7, 0.5], np.float32))
