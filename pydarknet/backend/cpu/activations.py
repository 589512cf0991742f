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
from ...jit import kernel


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
        if a == LEAKY:
            for i in range(size):
                v = (row[i] - m) * k + bias
                v = v if v > 0 else np.float32(0.1) * v
                row[i] = np.float32(0.0) if abs(v) < FLT_MIN else v   # NaN stays NaN
        elif a == LINEAR:
            for i in range(size):
                v = (row[i] - m) * k + bias
                row[i] = np.float32(0.0) if abs(v) < FLT_MIN else v   # NaN stays NaN
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


@kernel(parallel=True)
def _activate_rows(x, a):
    """activate_array over each row of x (R, N), rows anywhere in memory, each contiguous; the rows' chunks of
    _CHUNK values are the parallel pieces."""
    rows, n = x.shape
    chunks = -(-n // _CHUNK)
    for task in numba.prange(rows * chunks):
        row = x[task // chunks]
        first = (task % chunks) * _CHUNK
        last = min(n, first + _CHUNK)
        if a == LEAKY:          # the common cases get branch-free loops that vectorise
            for i in range(first, last):
                v = row[i]
                v = v if v > 0 else np.float32(0.1) * v
                row[i] = np.float32(0.0) if abs(v) < FLT_MIN else v     # NaN stays NaN
        elif a == LINEAR:
            for i in range(first, last):
                v = row[i]
                row[i] = np.float32(0.0) if abs(v) < FLT_MIN else v     # NaN stays NaN
        else:
            for i in range(first, last):
                row[i] = flush_value(activate_value(row[i], a))


def _as_rows(x):
    """x as (R, N) rows of its contiguous trailing axes, without a copy (a yolo head's entries of every anchor),
    or None where its leading axes do not merge."""
    inner, k = 1, x.ndim
    while k > 0 and x.strides[k - 1] == inner * x.itemsize:
        inner *= x.shape[k - 1]
        k -= 1
    rows = x.view()
    try:
        rows.shape = (-1, inner)
    except AttributeError:
        return None
    return rows


def activate(x, activation):
    """In place: Darknet's activate_array over x (a view whose rows are not contiguous is worked on a copy and
    written back)."""
    rows = _as_rows(x) if x.size else None
    if rows is not None:
        _activate_rows(rows, activation)
    elif x.size:
        flat = np.ascontiguousarray(x).reshape(1, -1)
        _activate_rows(flat, activation)
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
