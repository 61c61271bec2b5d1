"""Test metadata of the nn operator rows (see `OpTest`)."""
import numpy as np

from singax.autograd.nn import ConvHandle, PoolingHandle

from ._spec import OpTest


def _np_conv(x, W, b=None, *, handle, odd_padding=(0, 0, 0, 0)):
    """numpy reference: explicit zero padding, dilated kernel, per-group einsum."""
    h = handle
    t, bo, l, r = odd_padding
    x = np.pad(x, ((0, 0), (0, 0), (h.pad_h + t, h.pad_h + bo), (h.pad_w + l, h.pad_w + r)))
    kh, kw = (h.kernel_h - 1) * h.dilation_h + 1, (h.kernel_w - 1) * h.dilation_w + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    win = win[:, :, ::h.stride_h, ::h.stride_w, ::h.dilation_h, ::h.dilation_w]  # N,C,OH,OW,KH,KW
    cg, og = x.shape[1] // h.group, W.shape[0] // h.group
    y = np.concatenate([np.einsum("ncijkl,ockl->noij", win[:, g * cg:(g + 1) * cg], W[g * og:(g + 1) * og])
                        for g in range(h.group)], axis=1)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def _conv_sample(rng, attrs):
    h = attrs["handle"]
    x = rng.standard_normal((h.batchsize, h.channels, h.height, h.width))
    W = rng.standard_normal((h.num_filters, h.channels // h.group, h.kernel_h, h.kernel_w))
    return [x, W, rng.standard_normal(h.num_filters)] if h.bias_term else [x, W]


_CONV_SAMPLES = [
    dict(handle=ConvHandle((2, 3, 6, 5), 3, 1, 1, 3, 4, True)),
    dict(handle=ConvHandle((2, 4, 7, 6), (3, 2), 2, (1, 0), 4, 6, False, group=2)),
    dict(handle=ConvHandle((1, 2, 7, 7), 3, 1, 2, 2, 3, True, dilation=2), odd_padding=(1, 0, 0, 1)),
]


def _np_pool(x, *, handle, odd_padding=(0, 0, 0, 0)):
    """numpy reference: NaN padding, then nanmax / nanmean over each window."""
    h = handle
    t, bo, l, r = odd_padding
    x = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)), mode="edge")
    x = np.pad(x, ((0, 0), (0, 0), (h.pad_h,) * 2, (h.pad_w,) * 2), constant_values=np.nan)
    win = np.lib.stride_tricks.sliding_window_view(x, (h.kernel_h, h.kernel_w), axis=(2, 3))
    win = win[:, :, ::h.stride_h, ::h.stride_w]
    return (np.nanmax if h.is_max_pooling else np.nanmean)(win, axis=(4, 5))


def _pool_sample(rng, attrs):
    h = attrs["handle"]
    n = h.batchsize * h.channels * h.height * h.width
    # distinct, well separated values: no ties for max pooling
    return [rng.permutation(n).reshape(h.batchsize, h.channels, h.height, h.width) * 0.1]


def _embedding_sample(rng, attrs):
    return [rng.integers(0, 5, (2, 3)).astype(np.int32), rng.standard_normal((5, 4))]


def _np_cossim(a, b):
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


TESTS = {
    "conv2d": OpTest(samples=_CONV_SAMPLES, shapes=[()], sample=_conv_sample, ref=_np_conv),
    "pooling_2d": OpTest(
        shapes=[()],
        samples=[dict(handle=PoolingHandle((2, 2, 5, 6), 2, 2, 0, True)),
                 dict(handle=PoolingHandle((2, 2, 5, 6), 3, 2, 1, True), odd_padding=(0, 1, 1, 0)),
                 dict(handle=PoolingHandle((1, 3, 5, 5), 3, 2, 1, False)),
                 dict(handle=PoolingHandle((1, 2, 6, 5), (2, 3), (1, 2), (1, 1), False),
                      odd_padding=(1, 0, 0, 1))],
        sample=_pool_sample,
        ref=_np_pool),
    "embedding": OpTest(shapes=[()], sample=_embedding_sample, ref=lambda x, w: w[x.astype(np.int64)]),
    "cossim": OpTest(shapes=[((3, 4), (3, 4)), ((1, 6), (1, 6))], domain="nonzero", ref=_np_cossim),
}
