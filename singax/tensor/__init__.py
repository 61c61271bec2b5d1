"""SINGA's Tensor: a mutable handle on an immutable jax.Array.

`Tensor.data` is a `jax.Array`; in-place methods (`set_value`, `gaussian`,
`copy_from_numpy`, `+=`, optimizer updates) rebind it. Methods, module functions
and Python operators are not tracked by autograd (use `singax.autograd` ops for
that): their results are fresh tensors with default flags.

Result dtypes follow SINGA: Tensor⊕Tensor of two float32 is float32, of two
identical integer dtypes stays integer, anything else is float32 (float64 if
either side is float64); Tensor⊕scalar is float32 (float64 for a float64 tensor).
Comparisons return 1/0 in that dtype, never bool.

SINGA: `reshape`, `transpose` and `T` share storage with their input; jax arrays
are immutable, so here they are copies and a later in-place update of one tensor
is not seen by the other. `copy` keeps SINGA's sharing (see `Tensor.copy`).

This package is a face: `_engine` (dtype codes, array helpers) is below `_tensor`
(the Tensor class and its operators), which is below `_functions` (module functions).
"""
from ._engine import (CTensor, IndexValueError, bfloat16, bool_, dtype_name, float16, float32, float64,
                      int8, int32, int64, to_code, to_np_dtype, uint8)
from ._functions import (PlaceHolder, abs, add, add_column, add_row, average, axpy, bernoulli, ceil,
                         concatenate, contiguous, copy_data_to_from, copy_from_numpy, div, einsum,
                         eltwise_mult, eq, exp, from_numpy, from_raw_tensor, from_raw_tensors, gaussian,
                         ge, gt, le, log, lt, mult, ones, ones_like, pow, product, random, repeat,
                         reshape, sigmoid, sign, sizeof, softmax, sqrt, square, sub, sum, sum_columns,
                         sum_rows, tanh, tensordot, to_host, to_numpy, transpose, uniform, zeros,
                         zeros_like)
from ._tensor import Tensor

__all__ = [
    "Tensor", "PlaceHolder", "CTensor", "IndexValueError",
    "float32", "float16", "int32", "int8", "float64", "uint8", "bfloat16", "int64", "bool_",
    "dtype_name", "to_np_dtype", "to_code",
    "from_numpy", "to_numpy", "to_host", "from_raw_tensor", "from_raw_tensors",
    "zeros_like", "ones_like", "zeros", "ones", "random", "product", "sizeof",
    "reshape", "transpose", "contiguous", "copy_data_to_from", "copy_from_numpy",
    "abs", "exp", "ceil", "log", "sigmoid", "sign", "sqrt", "square", "tanh",
    "sum", "pow", "average", "softmax", "lt", "le", "gt", "ge", "eq",
    "add", "sub", "eltwise_mult", "div", "mult", "einsum", "tensordot", "repeat", "concatenate",
    "axpy", "bernoulli", "gaussian", "uniform", "add_column", "add_row", "sum_columns", "sum_rows",
]
