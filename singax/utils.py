"""SINGA's `utils`: progress bar, padding helpers for conv/pooling, tape traversal."""
from __future__ import annotations

import math
import sys
from collections import OrderedDict
from typing import Any, Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "update_progress", "handle_odd_pad_fwd", "handle_odd_pad_bwd", "get_output_shape",
    "get_padding_shape", "same_pad_shape_check", "re_new_handle", "force_unicode",
    "post_order_recursive",
]

BAR_LENGTH = 20
SAME_MODES = ("SAME_UPPER", "SAME_LOWER")


def update_progress(progress: float, info: str) -> None:
    """Draw a 20-character progress bar with `info` on stdout, then rewind the cursor.

    Args:
      progress: fraction done; negative means halted, >= 1 means done.
      info: text shown after the bar.
    """
    status = ""
    if isinstance(progress, bool) or not isinstance(progress, (int, float)):
        progress, status = 0.0, "error: progress var must be float. "
    progress = float(progress)
    if progress < 0:
        progress, status = 0.0, "Halt. "
    elif progress >= 1:
        progress, status = 1.0, "Done. "
    filled = int(round(BAR_LENGTH * progress))
    text = f"[{'.' * filled}{' ' * (BAR_LENGTH - filled)}] {progress * 100:.1f}% {status}{info}"
    # rewind exactly what was written, so the next call overdraws it
    sys.stdout.write(text + "\b" * len(text))
    sys.stdout.flush()


def _check_4d(what: str, x: Any, odd_padding: Sequence[int]) -> tuple[int, ...]:
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{what}: expected a 4-D NCHW array, got shape {getattr(x, 'shape', None)}")
    pads = tuple(int(p) for p in odd_padding)
    if len(pads) != 4 or min(pads) < 0:
        raise ValueError(f"{what}: odd_padding must be 4 non-negative ints (top, bottom, left, right), "
                         f"got {tuple(odd_padding)}")
    return pads


def handle_odd_pad_fwd(x: jax.Array, odd_padding: Sequence[int], is_pool: bool = False) -> jax.Array:
    """Pre-pad an NCHW array by `odd_padding` = (top, bottom, left, right).

    Convolution pads with zeros; pooling (`is_pool=True`) pads with copies of the
    first/last rows and columns, so the padding never wins a max nor dilutes a mean.
    """
    top, bottom, left, right = _check_4d("handle_odd_pad_fwd", x, odd_padding)
    if not is_pool:
        return jnp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    h, w = x.shape[2], x.shape[3]
    if max(top, bottom) > h or max(left, right) > w:
        raise ValueError(f"handle_odd_pad_fwd: pooling padding {tuple(odd_padding)} exceeds the input "
                         f"size {(h, w)}")
    # copy the first `top` rows in front and the last `bottom` rows behind (then columns)
    x = jnp.concatenate([x[:, :, :top], x, x[:, :, h - bottom:]], axis=2)
    return jnp.concatenate([x[:, :, :, :left], x, x[:, :, :, w - right:]], axis=3)


def handle_odd_pad_bwd(dx: jax.Array, odd_padding: Sequence[int]) -> jax.Array:
    """Crop the rows/columns that `handle_odd_pad_fwd` added.

    For pooling the gradient reaching the duplicated border is dropped, as in SINGA.
    """
    top, bottom, left, right = _check_4d("handle_odd_pad_bwd", dx, odd_padding)
    h, w = dx.shape[2], dx.shape[3]
    return dx[:, :, top:h - bottom, left:w - right]


def get_output_shape(auto_pad: str, input_spatial_shape: Sequence[int],
                     kernel_spatial_shape: Sequence[int], strides_spatial: Sequence[int]) -> list[int]:
    """Output spatial shape for an ONNX `auto_pad` mode.

    SAME_UPPER/SAME_LOWER: ceil(in / s); VALID: ceil((in - k + 1) / s); other modes: zeros.
    """
    if auto_pad in SAME_MODES:
        return [math.ceil(i / s) for i, s in zip(input_spatial_shape, strides_spatial)]
    if auto_pad == "VALID":
        return [math.ceil((i - k + 1) / s)
                for i, k, s in zip(input_spatial_shape, kernel_spatial_shape, strides_spatial)]
    return [0] * len(input_spatial_shape)


def get_padding_shape(pad_mode: str, input_spatial_shape: Sequence[int],
                      kernel_spatial_shape: Sequence[int], strides_spatial: Sequence[int]):
    """Padding that gives `get_output_shape(pad_mode, ...)`.

    Returns:
      `(pads, odd_pads)`, each `[begin_0, end_0, begin_1, end_1, ...]`: `pads` is the
      symmetric half of each dimension's total padding on both sides; `odd_pads` holds
      the one leftover pixel of an odd total, at the end (SAME_UPPER) or the beginning
      (any other mode).

    SINGA: a negative total (kernel smaller than stride) is clamped to 0 as in ONNX.
    """
    out_shape = get_output_shape(pad_mode, input_spatial_shape, kernel_spatial_shape, strides_spatial)
    pads, odd = [], []
    for o, i, k, s in zip(out_shape, input_spatial_shape, kernel_spatial_shape, strides_spatial):
        total = max((o - 1) * s + k - i, 0) if pad_mode in SAME_MODES else 0
        pads += [total // 2, total // 2]
        rest = total % 2
        odd += [0, rest] if pad_mode == "SAME_UPPER" else [rest, 0]
    return pads, odd


def same_pad_shape_check(handle: Any, pad_mode: str, x: Any):
    """Check that a conv/pool handle's padding is the SAME padding for input `x`.

    Returns:
      `(pads, odd_pads)` of `get_padding_shape` for `x`'s spatial shape.

    SINGA: raises ValueError (SINGA's version fails with a tuple-unpacking error before
    it can compare).
    """
    kernel = [handle.kernel_h, handle.kernel_w]
    stride = [handle.stride_h, handle.stride_w]
    pads, odd = get_padding_shape(pad_mode, tuple(x.shape)[2:], kernel, stride)
    expected = [pads[0], pads[2]]
    if [handle.pad_h, handle.pad_w] != expected:
        raise ValueError(f"same_pad_shape_check: {pad_mode} padding for input {tuple(x.shape)} with "
                         f"kernel {tuple(kernel)} and stride {tuple(stride)} is (pad_h, pad_w) = "
                         f"{tuple(expected)}, but the handle has {(handle.pad_h, handle.pad_w)}")
    return pads, odd


def re_new_handle(handle: Any, x: Any, is_pool: bool = False) -> Any:
    """A new conv/pooling handle with `handle`'s hyper-parameters, built for input `x`.

    Calls the handle's own class with SINGA's constructor arguments:
    `(x, kernel, stride, padding, is_max)` for pooling and
    `(x, kernel, stride, padding, in_channels, out_channels, bias, group)` for conv
    (plus singax's `dilation=` when the handle has one).
    """
    kernel = [handle.kernel_h, handle.kernel_w]
    stride = [handle.stride_h, handle.stride_w]
    padding = [handle.pad_h, handle.pad_w]
    if is_pool:
        args = (x, kernel, stride, padding, handle.is_max_pooling)
    else:
        args = (x, kernel, stride, padding, handle.channels, handle.num_filters,
                handle.bias_term, handle.group)
        if hasattr(handle, "dilation_h"):
            return type(handle)(*args, dilation=(handle.dilation_h, handle.dilation_w))
    return type(handle)(*args)


def force_unicode(s: Any) -> Any:
    """Decode bytes as UTF-8; return anything else unchanged."""
    return s.decode("utf-8") if isinstance(s, (bytes, bytearray)) else s


def post_order_recursive(root: Any, root_t: Any = None):
    """Post-order (depth-first) walk of the autograd tape that ends at operator `root`.

    Returns:
      `(nodes, weights, inputs)`, OrderedDicts keyed by operator name in post order:
      `nodes` the non-leaf operators; `weights` leaf tensors that store gradients
      (parameters); `inputs` the other leaf tensors.

    SINGA: `inputs` maps to the leaf tensor (SINGA stores None there); the walk is
    iterative, so deep tapes (long RNN unrolls) do not hit Python's recursion limit.
    """
    from .autograd._tape import Dummy, post_order

    nodes: OrderedDict = OrderedDict()
    weights: OrderedDict = OrderedDict()
    inputs: OrderedDict = OrderedDict()
    for op in post_order([root]) if root is not None else []:
        if not isinstance(op, Dummy):
            nodes[op.name] = op
        elif op is root and root_t is not None:
            weights[op.name] = root_t
        elif op.tensor.stores_grad:
            weights[op.name] = op.tensor
        else:
            inputs[op.name] = op.tensor
    return nodes, weights, inputs
