"""numpy's own BLAS (its cblas_sgemm) called from Numba kernels, so that a parallel kernel's threads run the pieces
of a GEMM: one pool of threads (Numba's) for the whole inference pass.

Why: a GEMM shared out by threads.py runs on Python threads that sleep and take the GIL between jobs, and every
hand-over between them and Numba's threads wakes a sleeping thread (70-100 us each on this 2-vCPU machine, dozens
of times a pass). In one pool the threads spin for a bounded time between parallel regions (GOMP_SPINCOUNT, set by
pydarknet at import) and a region starts in 2-5 us.

`library()` finds the function in the BLAS numpy loaded (its ILP64 or LP64 symbol); kernels take its address and
width as arguments (an address baked into a cached kernel would be stale in the next process). Where numpy's BLAS
has no cblas_sgemm, `library()` is None and callers keep the threads.py path.
"""
import ctypes

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ...jit import kernel
from . import threads
from .activations import bias_activate_row

# cblas's enums; the symbols numpy's BLAS builds export, with whether their integers are 64-bit
ROW_MAJOR = 101
NO_TRANSPOSE = 111
TRANSPOSE = 112
SYMBOLS = (("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True), ("scipy_cblas_sgemm", False),
           ("cblas_sgemm", False))
_found = []


def library():
    """(address, wide) of numpy's cblas_sgemm, or None where its BLAS exports none of SYMBOLS. Every loaded BLAS
    runs on one thread (threads.limit_blas): Numba's threads are the parallelism."""
    if not _found:
        _found.append(_look_up())
    threads.limit_blas()
    return _found[0]


def _look_up():
    try:
        from numpy._core import _multiarray_umath
    except ImportError:         # numpy 1.x
        from numpy.core import _multiarray_umath
    try:
        numpy_core = ctypes.CDLL(_multiarray_umath.__file__)   # dlsym on it searches the BLAS it links to
    except OSError:
        return None
    for name, wide in SYMBOLS:
        function = getattr(numpy_core, name, None)
        if function is not None:
            return ctypes.cast(function, ctypes.c_void_p).value, wide
    return None


def _call(builder, address, width, args):
    """cblas_sgemm(*args) through the function at `address` whose integers are `width` bits."""
    integer, floats = ir.IntType(width), ir.PointerType(ir.FloatType())
    kinds = [ir.IntType(32)] * 3 + [integer] * 3 + [ir.FloatType(), floats, integer, floats, integer,
                                                   ir.FloatType(), floats, integer]
    function = builder.inttoptr(address, ir.PointerType(ir.FunctionType(ir.VoidType(), kinds)))
    sizes = (3, 4, 5, 8, 10, 13)        # m, n, k, lda, ldb, ldc: int64 here
    builder.call(function, [builder.trunc(v, integer) if i in sizes and width < 64 else v for i, v in enumerate(args)])


@intrinsic
def _cblas_sgemm(typingctx, address, wide, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """cblas_sgemm(RowMajor, trans_a, trans_b, m, n, k, 1, a, lda, b, ldb, beta, c, ldc) through `address`; a, b,
    c arrays whose first element is the matrix's."""
    def codegen(context, builder, signature, args):
        address, wide, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc = args
        pointers = [builder.bitcast(context.make_array(t)(context, builder, v).data, ir.PointerType(ir.FloatType()))
                    for t, v in ((signature.args[7], a), (signature.args[9], b), (signature.args[12], c))]
        common = [ir.Constant(ir.IntType(32), ROW_MAJOR), builder.trunc(trans_a, ir.IntType(32)),
                  builder.trunc(trans_b, ir.IntType(32)), m, n, k, ir.Constant(ir.FloatType(), 1.0), pointers[0],
                  lda, pointers[1], ldb, beta, pointers[2], ldc]
        with builder.if_else(builder.trunc(wide, ir.IntType(1))) as (then, otherwise):
            with then:
                _call(builder, address, 64, common)
            with otherwise:
                _call(builder, address, 32, common)
        return context.get_dummy_value()
    matrix = types.Array(types.float32, 2, "A")
    signature = types.none(types.int64, types.boolean, types.int64, types.int64, types.int64, types.int64,
                           types.int64, matrix, types.int64, matrix, types.int64, types.float32, matrix, types.int64)
    return signature, codegen


@kernel(inline="always")
def _layout(x):
    """(cblas transpose flag, leading dimension) of a 2-d float32 view as a row-major operand; flag 0 where BLAS
    cannot read it in place (neither its rows nor its columns contiguous)."""
    rows, cols = x.shape
    s0, s1 = x.strides
    if (s1 == 4 or cols == 1) and (rows == 1 or s0 >= 4 * cols):
        return NO_TRANSPOSE, cols if rows == 1 else s0 // 4
    if (s0 == 4 or rows == 1) and (cols == 1 or s1 >= 4 * rows):
        return TRANSPOSE, rows if cols == 1 else s1 // 4
    return 0, 0


@kernel(nogil=True)
def product(address, wide, a, b, c):
    """c = a @ b on the calling thread, for 2-d float32 views that fits() takes."""
    m, n = c.shape
    trans_a, lda = _layout(a)
    trans_b, ldb = _layout(b)
    ldc = n if m == 1 else c.strides[0] // 4
    lda = max(lda, 1)
    ldb = max(ldb, 1)
    _cblas_sgemm(address, wide, trans_a, trans_b, m, n, a.shape[1], a, lda, b, ldb, np.float32(0.0), c, max(ldc, 1))


@kernel(nogil=True)
def fits(a, b, c):
    """Whether BLAS reads a and b in place and writes c's rows (c's columns contiguous, or one column)."""
    rows, cols = c.shape
    row_major = (c.strides[1] == 4 or cols == 1) and (rows == 1 or c.strides[0] >= 4 * cols)
    return row_major and _layout(a)[0] != 0 and _layout(b)[0] != 0


@kernel(parallel=True, nogil=True)
def pieces(address, wide, a, b, c, step, by_columns, mean, scale, bias, activation, finish):
    """c = a @ b cut into pieces of `step` columns (by_columns) or rows of c, shared out over Numba's threads; with
    `finish`, each piece's rows (one a filter) get (v - mean) * scale + bias and the activation (LEAKY or LINEAR)
    while they are in the core's cache: a convolution's inference epilogue (activations.bias_activate_row)."""
    m, n = c.shape
    count = -(-(n if by_columns else m) // step)
    for i in numba.prange(count):
        first = i * step
        if by_columns:
            last = min(n, first + step)
            product(address, wide, a, b[:, first:last], c[:, first:last])
            if finish:
                finish_rows(c, 0, m, first, last, mean, scale, bias, activation)
        else:
            last = min(m, first + step)
            product(address, wide, a[first:last], b, c[first:last])
            if finish:
                finish_rows(c, first, last, 0, n, mean, scale, bias, activation)


@kernel(nogil=True)
def finish_rows(c, first, last, left, right, mean, scale, bias, activation):
    """The epilogue of rows first..last-1, columns left..right-1 of c (row f: filter f's)."""
    for f in range(first, last):     # a slice's indices from 0: no wraparound test, vector code
        bias_activate_row(c[f, left:right], mean[f], scale[f], bias[f], activation)


@kernel(parallel=True, nogil=True)
def planes(address, wide, a, b, c, order, transpose_a):
    """c[i] = a[order[i]] @ b[i] (a[order[i]]'s transpose where transpose_a) for each plane i: Winograd's 16 tile
    positions, shared out over Numba's threads."""
    for i in numba.prange(c.shape[0]):
        if transpose_a:
            product(address, wide, a[order[i]].T, b[i], c[i])
        else:
            product(address, wide, a[order[i]], b[i], c[i])
