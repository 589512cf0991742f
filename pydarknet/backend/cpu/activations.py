"""Darknet's activations.c (activate_array, gradient_array) on the CPU, and bias_activate: normalize_cpu, scale_bias,
add_bias and activate_array in one pass. Values that come out denormal are set to zero (flush does it to a whole
array), as Darknet's -Ofast build does in hardware.

Arithmetic follows Darknet's C: where C promotes a float to double (exp, sqrt, `.1*x`), so do we, and round back to
float32 where C stores the result. activate_value and flush_value (kernels.cu's twins have the same names) and
FLT_MIN serve the other modules' fused loops too.
"""
import math

import numba
import numpy as np

from ...activations import ELU, HARDTAN, LEAKY, LHTAN, LINEAR, LOGGY, LOGISTIC, PLSE, RAMP, RELIE, RELU, STAIR, TANH
from ...jit import ieee_kernel, kernel
from . import simd


FLT_MIN = np.float32(1.17549435e-38)      # below this a float32 is denormal: we flush it, as Darknet's -Ofast does


@kernel(inline="always")
def activate_value(x, a):
    """activations.h, one value: computed in double where C promotes, returned as float32."""
    v = np.float64(x)
    if a == LINEAR:
        r = v
    elif a == LEAKY:
        r = v if v > 0 else 0.1 * v
    elif a == RELU:
        r = v if v > 0 else 0.0
    elif a == LOGISTIC:
        r = 1.0 / (1.0 + math.exp(-v))
    elif a == LOGGY:
        r = 2.0 / (1.0 + math.exp(-v)) - 1.0
    elif a == RELIE:
        r = v if v > 0 else 0.01 * v
    elif a == RAMP:
        r = (v if v > 0 else 0.0) + 0.1 * v
    elif a == TANH:
        e = math.exp(2.0 * v)
        r = (e - 1.0) / (e + 1.0)
    elif a == PLSE:
        if v < -4:
            r = 0.01 * (v + 4)
        elif v > 4:
            r = 0.01 * (v - 4) + 1
        else:
            r = 0.125 * v + 0.5
    elif a == ELU:
        r = v if v >= 0 else math.exp(v) - 1.0
    elif a == LHTAN:
        if v < 0:
            r = 0.001 * v
        elif v > 1:
            r = 0.001 * (v - 1) + 1
        else:
            r = v
    elif a == HARDTAN:
        r = -1.0 if v < -1 else (1.0 if v > 1 else v)
    elif a == STAIR:
        n = math.floor(v)
        if int(n) % 2 == 0:
            r = math.floor(v / 2.0)
        else:
            r = (v - n) + math.floor(v / 2.0)
    else:  # SELU
        r = 1.0507 * v if v >= 0 else 1.0507 * 1.6732 * (math.exp(v) - 1.0)
    return np.float32(r)


_ROUND = 6755399441055744.0                                   # 1.5 * 2**52: adding it rounds to a whole number
_LOG2E = 1.4426950408889634
_LN2_HIGH = 6.93147180369123816490e-01    # ln 2 in two parts: n * _LN2_HIGH is exact for |n| < 2**11
_LN2_LOW = 1.90821492927058770002e-10
_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))      # exp's series: 1 / k!


@kernel(inline="always")
def _exp_near(t):
    """exp(t) in double for t in [-708, 709], within an ulp or two of libm's: t = n ln2 + r (Cody and Waite),
    exp(r) by its Taylor series to r**13 (|r| <= ln2/2: below 1e-17 left out), times 2**n built from its bits.
    Straight arithmetic, so that a loop of it becomes vector code (a call of libm's exp does not)."""
    k = t * _LOG2E + _ROUND
    n = k - _ROUND
    r = (t - n * _LN2_HIGH) - n * _LN2_LOW
    r2 = r * r      # Estrin's scheme: a shorter chain of dependent steps than Horner's
    r4 = r2 * r2
    c = _TAYLOR
    low = (1.0 + r) + r2 * (c[2] + r * c[3]) + r4 * ((c[4] + r * c[5]) + r2 * (c[6] + r * c[7]))
    high = (c[8] + r * c[9]) + r2 * (c[10] + r * c[11]) + r4 * (c[12] + r * c[13])
    return (low + r4 * r4 * high) * simd.double_from_bits((simd.double_bits(k) + 1023) << 52)


@kernel(inline="always")
def _logistic_value(x):
    """activate_value(x, LOGISTIC), 1 / (1 + exp(-x)) in double, with _exp_near: the same float32 but where the
    double lies within an ulp or two of a float32 rounding boundary (about 1 value in 10**8). Beyond [-708, 709]
    exp's tiny or huge values change nothing: 1 + exp(-x) rounds to 1, or the result to a denormal that is
    flushed; NaN stays NaN."""
    t = -np.float64(x)
    clamped = min(max(t, -708.0), 709.0)
    r = np.float32(1.0 / (1.0 + _exp_near(clamped)))
    return r if t == t else np.float32(t)


def epilogue_arguments(epilogue, like):
    """What the kernels that apply the epilogue as they write (bias_activate_row, direct.py's vectors) take:
    (mean, scale, bias, activation, apply) for an epilogue (mean, scale, bias, activation per filter) or None, then
    with `like` (a 1-d float32 array) standing in for the unused arrays."""
    if epilogue is None:
        return like, like, like, LINEAR, False
    return (*epilogue, True)


@kernel(inline="always")
def _bias_activate_value(v, mean, scale, bias, a):
    """One value of _bias_activate's common loops, (v - mean) * scale + bias, LEAKY or LINEAR, denormals to zero."""
    v = (v - mean) * scale + bias
    if a == LEAKY:
        v = v if v > 0 else np.float32(0.1) * v
    return np.float32(0.0) if abs(v) < FLT_MIN else v


@kernel(inline="always")
def bias_activate_row(row, mean, scale, bias, a):
    """_bias_activate_value over a 1-d row, LEAKY or LINEAR (any other: LINEAR), each in a loop of its own so that
    the activation's branch is not taken per value: _bias_activate, and the kernels that apply an epilogue as they
    write (sgemm.py's GEMM pieces, winograd.py's output transform)."""
    if a == LEAKY:
        for j in range(row.size):
            row[j] = _bias_activate_value(row[j], mean, scale, bias, LEAKY)
    else:
        for j in range(row.size):
            row[j] = _bias_activate_value(row[j], mean, scale, bias, LINEAR)


@kernel(inline="always")
def flush_value(y):
    return np.float32(0.0) if -FLT_MIN < y < FLT_MIN else y


@kernel(parallel=True)
def _bias_activate(y, mean, variance, scales, biases, normalize, a):
    """Darknet's normalize_cpu, scale_bias, add_bias and activate_array fused into one pass over y (B, C, N).

    Per channel, (x - mean) / (sqrt(var) + 1e-6) * scale becomes (x - mean) * k with k computed once in double:
    the same value within an ulp, and a loop that vectorises. Leaky and linear, nearly every YOLO layer, get
    their own loops so that the activation's branch is not taken per value.
    """
    batch, channels, size = y.shape
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        m = np.float32(0.0)
        k = np.float32(1.0)
        if normalize:
            m = mean[c]
            k = np.float32(np.float64(scales[c]) / (math.sqrt(np.float64(variance[c])) + 1e-6))
        bias = biases[c]
        row = y[b, c]
        if a == LEAKY or a == LINEAR:       # NaN stays NaN in both
            bias_activate_row(row, m, k, bias, a)
        else:
            for i in range(size):
                row[i] = flush_value(activate_value((row[i] - m) * k + bias, a))


def bias_activate(y, biases, activation, scales=None, mean=None, variance=None):
    """In place on y (B, C, ...): optional batch-norm with given statistics, + bias, activation, denormals to 0."""
    shaped = y.reshape(y.shape[0], y.shape[1], -1)
    normalize = scales is not None
    if not normalize:
        scales = mean = variance = biases
    _bias_activate(shaped, mean, variance, scales, biases, normalize, activation)
    return y


_CHUNK = 4096       # values of a row a thread takes at a time


@ieee_kernel(parallel=True)
def _activate_rows(x, stride, rows, n, a):
    """activate_array over rows values x[r * stride:r * stride + n] of the flat array x, r < rows (one row: a
    whole array; several: the rows of a view, a yolo head's entries of every anchor); the rows' chunks of _CHUNK
    values are the parallel pieces. Each loop runs over a slice from 0 (an index that cannot be negative keeps
    Numba's wraparound test out of it) with IEEE division (C's): both let the loops become vector code."""
    chunks = -(-n // _CHUNK)
    for task in numba.prange(rows * chunks):
        start = (task // chunks) * stride
        part = x[start + (task % chunks) * _CHUNK:start + min(n, (task % chunks + 1) * _CHUNK)]
        if a == LEAKY:
            for i in range(part.size):
                v = part[i]
                v = v if v > 0 else np.float32(0.1) * v
                part[i] = np.float32(0.0) if abs(v) < FLT_MIN else v     # NaN stays NaN
        elif a == LINEAR:
            for i in range(part.size):
                v = part[i]
                part[i] = np.float32(0.0) if abs(v) < FLT_MIN else v     # NaN stays NaN
        elif a == LOGISTIC:     # the yolo and region heads
            for i in range(part.size):
                part[i] = flush_value(_logistic_value(part[i]))
        else:
            for i in range(part.size):
                part[i] = flush_value(activate_value(part[i], a))


def _rows_of(x):
    """(flat, stride, rows, n): x's values as `rows` runs of n, `stride` apart, in flat, a 1-d view from x's first
    value (no copy); None where x's trailing axes are not contiguous or its leading ones do not merge."""
    inner, k = 1, x.ndim
    while k > 0 and x.strides[k - 1] == inner * x.itemsize:
        inner *= x.shape[k - 1]
        k -= 1
    rows = x.view()
    try:
        rows.shape = (-1, inner)
    except AttributeError:
        return None
    stride = rows.strides[0] // x.itemsize if rows.shape[0] > 1 else inner
    span = (rows.shape[0] - 1) * stride + inner
    return np.lib.stride_tricks.as_strided(x, (span,), (x.itemsize,)), stride, rows.shape[0], inner


def activate(x, activation):
    """In place: Darknet's activate_array over x (a view whose rows are not contiguous is worked on a copy and
    written back)."""
    if not x.size:
        return x
    rows = _rows_of(x)
    if rows is not None:
        _activate_rows(*rows, activation)
    else:
        flat = np.ascontiguousarray(x).reshape(-1)
        _activate_rows(flat, flat.size, 1, flat.size, activation)
        x[...] = flat.reshape(x.shape)
    return x


@kernel(inline="always")
def _gradient(y, a):
    """activations.h's *_gradient, from the activated output y, as a float32 factor."""
    if a == LINEAR:
        return np.float32(1.0)
    if a == LEAKY:
        return np.float32(1.0) if y > 0 else np.float32(0.1)
    if a == RELU:
        return np.float32(1.0) if y > 0 else np.float32(0.0)
    if a == LOGISTIC:
        return (np.float32(1.0) - y) * y
    if a == LOGGY:
        v = (y + np.float32(1.0)) / np.float32(2.0)
        return np.float32(2.0) * (np.float32(1.0) - v) * v
    if a == RELIE:
        return np.float32(1.0) if y > 0 else np.float32(0.01)
    if a == RAMP:
        return np.float32(1.1) if y > 0 else np.float32(0.1)
    if a == TANH:
        return np.float32(1.0) - y * y
    if a == PLSE:
        return np.float32(0.01) if (y < 0 or y > 1) else np.float32(0.125)
    if a == ELU:
        return np.float32(1.0) if y >= 0 else y + np.float32(1.0)
    if a == LHTAN:
        return np.float32(1.0) if (y > 0 and y < 1) else np.float32(0.001)
    if a == HARDTAN:
        return np.float32(1.0) if (y > -1 and y < 1) else np.float32(0.0)
    if a == STAIR:
        return np.float32(0.0) if math.floor(y) == y else np.float32(1.0)
    return np.float32(1.0507) if y >= 0 else y + np.float32(1.0507 * 1.6732)   # SELU


@kernel(parallel=True)
def _gradient_array(y, a, delta):
    n = y.size
    if a == LEAKY:
        for i in numba.prange(n):
            delta[i] *= np.float32(1.0) if y[i] > 0 else np.float32(0.1)
    else:
        for i in numba.prange(n):
            delta[i] *= _gradient(y[i], a)


def gradient(y, activation, delta):
    """In place: Darknet's gradient_array, delta *= f'(y) for the activated output y."""
    if activation != LINEAR:
        _gradient_array(y.reshape(-1), activation, delta.reshape(-1))
    return delta


@kernel(parallel=True)
def _flush_array(x):
    for i in numba.prange(x.size):
        if -FLT_MIN < x[i] < FLT_MIN:
            x[i] = 0.0


def flush(x):
    """In place: denormal values to zero (gradients that shrink layer by layer would otherwise slow every GEMM
    ten-fold; Darknet's -Ofast build flushes them in hardware)."""
    _flush_array(x.reshape(-1))
    return x
