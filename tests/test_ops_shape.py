"""Semantics of the reduction and shape/indexing operators that the table cannot
express: SINGA's shape rules, multi-output gradients through the tape, gradients
for unsorted/duplicate/negative-step indexing, and error messages."""
import builtins

import numpy as np
import pytest

from singax import autograd
from singax.tensor import Tensor
from _helpers import P, T


@pytest.fixture(autouse=True)
def _train():
    autograd.training = True


def grad_of(y, x, dy):
    """The gradient of `x` from autograd.backward(y, dy)."""
    got = {id(p): g for p, g in autograd.backward(y, Tensor(data=np.asarray(dy, np.float32)))}
    return np.asarray(got[id(x)].data)


rng = np.random.default_rng(0)


# --- reductions ---------------------------------------------------------------------

@pytest.mark.parametrize("fn,npfn", [(autograd.reduce_sum, np.sum), (autograd.reduce_mean, np.mean)])
def test_full_reduction_without_keepdims_is_1x1(fn, npfn):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for axes in (None, [0, 1], [-1, 0]):
        y = fn(P(x), axes, 0)
        assert y.shape == (1, 1)
        np.testing.assert_allclose(np.asarray(y.data)[0, 0], npfn(x), rtol=1e-6)
    assert fn(P(x[0]), [0], 0).shape == (1, 1)          # 1-d input too
    assert fn(P(x), None, 1).shape == (1, 1)
    assert fn(P(x[None]), None, 1).shape == (1, 1, 1)
    assert fn(P(x), [1], 0).shape == (2,)


def test_reduce_sum_gradient_is_dy_broadcast_not_the_mean():
    x = P(rng.standard_normal((2, 3, 4)).astype(np.float32))
    y = autograd.reduce_sum(x, [0, 2], 0)
    dy = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_allclose(grad_of(y, x, dy), np.broadcast_to(dy[None, :, None], (2, 3, 4)))
    x = P(rng.standard_normal((2, 3)).astype(np.float32))
    y = autograd.reduce_mean(x, [1], 1)
    np.testing.assert_allclose(grad_of(y, x, [[3.0], [6.0]]), [[1.0] * 3, [2.0] * 3], rtol=1e-6)


def test_globalaveragepool_formats():
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(autograd.globalaveragepool(P(x)).data, x.mean((2, 3), keepdims=True), rtol=1e-5)
    y = autograd.GlobalAveragePool("channels_last")(P(x))[0]
    assert y.shape == (2, 1, 1, 5)
    with pytest.raises(ValueError, match="data_format"):
        autograd.globalaveragepool(P(x), "NCHW")


# --- reshaping ----------------------------------------------------------------------

def test_unsqueeze_uses_list_insert_semantics():
    x = P(np.zeros((3, 4), np.float32))
    assert autograd.unsqueeze(x, [-1]).shape == (3, 1, 4)   # before the last dim, unlike ONNX
    assert autograd.unsqueeze(x).shape == (3, 1, 4)         # the default -1, as an int
    assert autograd.unsqueeze(x, 0).shape == (1, 3, 4)
    assert autograd.unsqueeze(x, [0, 3]).shape == (1, 3, 4, 1)
    assert autograd.unsqueeze(x, [-1, -1]).shape == (3, 1, 1, 4)
    assert autograd.unsqueeze(x, [9]).shape == (3, 4, 1)    # insert past the end appends
    v = P(np.arange(5, dtype=np.float32))
    assert autograd.unsqueeze(v, [0]).shape == (5,)         # SINGA's 1-d special case
    assert autograd.unsqueeze(v, [1]).shape == (5, 1)
    assert autograd.Unsqueeze([0, 1]).axis == [0, 1]


def test_squeeze_all_ones_input_is_kept():
    assert autograd.squeeze(P(np.ones((1, 1, 1), np.float32))).shape == (1, 1, 1)
    assert autograd.squeeze(P(np.ones((1, 1), np.float32)), [0, 1]).shape == (1, 1)
    x = P(np.ones((1, 3, 1), np.float32))
    assert autograd.squeeze(x).shape == (3,)
    assert autograd.squeeze(x, [0]).shape == (3, 1)
    assert autograd.squeeze(x, -1).shape == (1, 3)
    with pytest.raises(ValueError, match=r"squeeze: axis 1 of input \(1, 3, 1\) has size 3"):
        autograd.squeeze(x, [1])


def test_reshape_zero_and_minus_one_and_backward():
    x = P(rng.standard_normal((2, 3, 4)).astype(np.float32))
    y = autograd.reshape(x, [0, -1])
    assert y.shape == (2, 12)
    dy = rng.standard_normal((2, 12)).astype(np.float32)
    np.testing.assert_allclose(grad_of(y, x, dy), dy.reshape(2, 3, 4))
    assert autograd.flatten(x, 0).shape == (1, 24)
    assert autograd.flatten(x, -1).shape == (6, 4)


def test_reshape_to_wrong_size_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 4\)"):
        autograd.reshape(P(np.zeros((2, 3), np.float32)), [4, 4])
    with pytest.raises(ValueError, match="at most one -1"):
        autograd.reshape(P(np.zeros((2, 3), np.float32)), [-1, -1])


def test_attributes_set_after_construction_like_the_onnx_backend():
    op = autograd.Reshape([0, -1])
    op.shape = np.array([3, -1], np.int64)
    assert op(P(np.zeros((2, 3), np.float32)))[0].shape == (3, 2)
    g = autograd.Gather(0, [0])
    g.indices = np.array([[1, 0]], np.int64)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(g(P(x))[0].data, x[[[1, 0]]])
    s = autograd.Slice([0], [1])
    assert (s.starts, s.ends, s.axes, s.steps) == ([0], [1], None, None)


def test_transpose_wrapper_takes_perm_as_shape():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(autograd.transpose(P(x), shape=(1, 2, 0)).data, x.transpose(1, 2, 0))
    assert autograd.Transpose([2, 0, 1]).perm == [2, 0, 1]
    with pytest.raises(ValueError, match="transpose: perm"):
        autograd.transpose(P(x), [0, 0, 1])


# --- concat / split ----------------------------------------------------------------------

def test_split_gradient_with_every_output_in_the_loss():
    x = P(rng.standard_normal((4, 6)).astype(np.float32))
    o = autograd.split(x, 1, [1, 2, 3])
    assert isinstance(o, tuple) and [t.shape for t in o] == [(4, 1), (4, 2), (4, 3)]
    z = autograd.cat([o[2], o[0], o[1]], axis=1)
    dy = rng.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(grad_of(z, x, dy), np.concatenate([dy[:, 3:4], dy[:, 4:], dy[:, :3]], 1))
    # a scalar loss through reduce_sum, each output weighted differently
    o = autograd.split(x, -1, None, 2)
    loss = autograd.reduce_sum(autograd.cat([o[1], autograd.reduce_sum(o[0], [1], 1)], 1), None, 0)
    want = np.concatenate([np.ones((4, 3)), np.ones((4, 3))], 1)
    np.testing.assert_allclose(grad_of(loss, x, [[1.0]]), want)


def test_split_output_left_out_of_the_loss_gets_zero_gradient():
    x = P(rng.standard_normal((4, 6)).astype(np.float32))
    o = autograd.split(x, 0, [1, 3])
    dy = rng.standard_normal((1, 6)).astype(np.float32)
    np.testing.assert_allclose(grad_of(o[0], x, dy), np.concatenate([dy, np.zeros((3, 6))]))


def test_split_single_part_is_still_a_tuple_and_bad_parts_raise():
    x = P(np.zeros((4, 6), np.float32))
    assert len(autograd.split(x, 0, [4])) == 1
    with pytest.raises(ValueError, match=r"split: parts \(1, 2\) .* sum to 4"):
        autograd.split(x, 0, [1, 2])
    with pytest.raises(ValueError, match="num_output=4"):
        autograd.split(x, 1, None, 4)


def test_cat_takes_a_sequence_and_concat_varargs():
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 1)).astype(np.float32)
    np.testing.assert_array_equal(autograd.cat((P(a), P(b)), -1).data, np.concatenate([a, b], 1))
    np.testing.assert_array_equal(autograd.Concat(1)(P(a), P(b))[0].data, np.concatenate([a, b], 1))
    with pytest.raises(TypeError, match="cat"):
        autograd.cat(P(a))
    with pytest.raises(ValueError, match="cat"):
        autograd.cat([P(a), P(b)], 0)


# --- slicing and indexing --------------------------------------------------------------------

def test_slice_negative_steps_gradient():
    a = rng.standard_normal((5, 6)).astype(np.float32)
    x = P(a)
    y = autograd.slice(x, [4, -1], [0, -100], [0, 1], [-2, -3])
    np.testing.assert_array_equal(y.data, a[4:0:-2, -1:-100:-3])
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = np.zeros_like(a)
    want[4:0:-2, -1:-100:-3] = dy
    np.testing.assert_allclose(grad_of(y, x, dy), want)
    with pytest.raises(ValueError, match="slice: empty result"):
        autograd.slice(x, [3], [3])
    assert builtins.slice(1, 2) == builtins.slice(1, 2)  # the builtin is untouched


def test_gather_unsorted_duplicate_negative_indices_gradient():
    a = rng.standard_normal((4, 3)).astype(np.float32)
    x = P(a)
    idx = [3, 1, 1, -1, 0]
    y = autograd.gather(x, 0, idx)
    np.testing.assert_array_equal(y.data, a[[3, 1, 1, 3, 0]])
    dy = rng.standard_normal((5, 3)).astype(np.float32)
    want = np.zeros_like(a)
    np.add.at(want, [3, 1, 1, 3, 0], dy)
    np.testing.assert_allclose(grad_of(y, x, dy), want, rtol=1e-6)
    # a list of lists adds an axis at `axis`
    x = P(a)
    y = autograd.gather(x, 1, [[0, 2], [2, 2]])
    assert y.shape == (4, 2, 2)
    dy = rng.standard_normal((4, 2, 2)).astype(np.float32)
    want = np.zeros_like(a)
    np.add.at(want.T, [[0, 2], [2, 2]], dy.transpose(1, 2, 0))
    np.testing.assert_allclose(grad_of(y, x, dy), want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"gather: indices must lie in \[-4, 3\]"):
        autograd.gather(P(a), 0, [4])


def test_tile_leading_axes_rule():
    a = rng.standard_normal((2, 3)).astype(np.float32)
    x = P(a)
    y = autograd.tile(x, [2])
    np.testing.assert_array_equal(y.data, np.tile(a, (2, 1)))   # numpy.tile(a, [2]) is (2, 6)
    dy = rng.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(grad_of(y, x, dy), dy[:2] + dy[2:], rtol=1e-6)
    assert autograd.tile(P(a), [2, 1, 3]).shape == (2, 2, 9)


def test_expand_gradient_unbroadcasts_across_ranks():
    a = rng.standard_normal((3, 1)).astype(np.float32)
    x = P(a)
    y = autograd.expand(x, [2, 3, 4])
    dy = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(grad_of(y, x, dy), dy.sum(0).sum(1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError, match=r"expand: cannot broadcast input \(3, 1\) to shape \(2, 4\)"):
        autograd.expand(P(a), [2, 4])


# --- padding and resampling ---------------------------------------------------------------------

def test_pad_modes_and_their_true_gradients():
    v = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(autograd.pad(P(v), "constant", [2, 1], 7.0).data, [7, 7, 0, 1, 2, 3, 7])
    np.testing.assert_array_equal(autograd.pad(P(v), "edge", [2, 1]).data, [0, 0, 0, 1, 2, 3, 3])
    # SINGA's reflect copies the border slices in order (numpy's would give 2 1 0 1 2 3 2)
    np.testing.assert_array_equal(autograd.pad(P(v), "reflect", [2, 1]).data, [0, 1, 0, 1, 2, 3, 3])
    for mode, want in [("constant", [1, 1, 1, 1]), ("edge", [3, 1, 1, 2]), ("reflect", [2, 2, 1, 2])]:
        x = P(v)
        y = autograd.pad(x, mode, [2, 1])
        np.testing.assert_array_equal(grad_of(y, x, np.ones(7)), want)
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(autograd.pad(P(m), "reflect", [1, 0, 0, 2]).data,
                                  [[0, 1, 2, 1, 2], [0, 1, 2, 1, 2], [3, 4, 5, 4, 5]])
    with pytest.raises(ValueError, match=r"pad: pads must have 2 \* rank = 4 entries"):
        autograd.pad(P(m), "edge", [1, 1])
    with pytest.raises(ValueError, match="pad: mode"):
        autograd.pad(P(m), "wrap", [1, 1, 1, 1])


def test_upsample_nearest_and_gradient():
    a = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    x = P(a)
    y = autograd.upsample(x, "nearest", [1, 2, 3])
    np.testing.assert_array_equal(y.data[0], [[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2)
    np.testing.assert_array_equal(grad_of(y, x, np.ones((1, 4, 6))), np.full((1, 2, 2), 6.0))
    with pytest.raises(ValueError, match="upsample: only mode 'nearest'"):
        autograd.upsample(P(a), "linear", [1, 2, 2])
    with pytest.raises(ValueError, match="upsample: scales"):
        autograd.upsample(P(a), "nearest", [1, 1.5, 2])


def test_depth_to_space_known_values_and_round_trip():
    x = np.arange(8, dtype=np.float32).reshape(1, 8, 1, 1)
    np.testing.assert_array_equal(autograd.depth_to_space(P(x), 2, "DCR").data[0],
                                  [[[0, 2], [4, 6]], [[1, 3], [5, 7]]])
    np.testing.assert_array_equal(autograd.depth_to_space(P(x), 2, "CRD").data[0],
                                  [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
    a = rng.standard_normal((2, 8, 3, 2)).astype(np.float32)
    for mode in ("DCR", "CRD"):
        y = autograd.depth_to_space(P(a), 2, mode)
        assert y.shape == (2, 2, 6, 4)
        np.testing.assert_array_equal(autograd.space_to_depth(y, 2, mode).data, a)
    with pytest.raises(ValueError, match=r"depth_to_space: channels 8 .* blocksize\*\*2 = 9"):
        autograd.depth_to_space(P(a), 3)


# --- selection ---------------------------------------------------------------------------------

def test_where_blend_gradients_and_nan_leak():
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((1, 3)).astype(np.float32)
    cond = [[1, 0, 1], [0, 0, 1]]
    c = np.array(cond, np.float32)
    x, y = P(a), P(b)
    out = autograd.where(x, y, cond)
    np.testing.assert_allclose(out.data, np.where(c > 0, a, b), rtol=1e-6)
    dy = rng.standard_normal((2, 3)).astype(np.float32)
    got = {id(p): np.asarray(g.data) for p, g in autograd.backward(out, Tensor(data=dy))}
    np.testing.assert_allclose(got[id(x)], c * dy)
    np.testing.assert_allclose(got[id(y)], ((1 - c) * dy).sum(0, keepdims=True), rtol=1e-6)
    # the arithmetic blend lets inf in the unselected branch through as NaN
    inf = np.array([np.inf, 1.0, 2.0], np.float32)
    r = np.asarray(autograd.where(P(inf), P(np.zeros(3, np.float32)), np.array([0, 1, 1])).data)
    assert np.isnan(r[0]) and r[1] == 1.0
    # condition as a Tensor, int inputs computed in float and cast back
    ci = autograd.where(T(np.array([5, 6], np.int32)), T(np.array([7, 8], np.int32)),
                        Tensor(data=np.array([1.0, 0.0], np.float32)))
    assert np.asarray(ci.data).dtype == np.int32 and np.asarray(ci.data).tolist() == [5, 8]


def test_scatter_elements_any_rank_and_gradient():
    a = rng.standard_normal((2, 3, 2)).astype(np.float32)
    idx = np.array([[[2, 0]], [[-1, 1]]])
    upd = np.array([[[10.0, 20.0]], [[30.0, 40.0]]], np.float32)
    x = P(a)
    y = autograd.scatter_elements(x, idx, upd, 1)
    want = a.copy()
    want[0, 2, 0], want[0, 0, 1], want[1, 2, 0], want[1, 1, 1] = 10, 20, 30, 40
    np.testing.assert_array_equal(y.data, want)
    dy = rng.standard_normal(a.shape).astype(np.float32)
    mask = np.ones_like(a)
    mask[0, 2, 0] = mask[0, 0, 1] = mask[1, 2, 0] = mask[1, 1, 1] = 0
    np.testing.assert_allclose(grad_of(y, x, dy), dy * mask)
    op = autograd.ScatterElements(idx, upd, axis=1)
    assert op.axis == 1 and op.indices is idx
    with pytest.raises(ValueError, match="scatter_elements: indices"):
        autograd.scatter_elements(P(a), [[0, 1]], [[1.0, 2.0]], 0)
