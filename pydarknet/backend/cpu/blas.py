"""The array operations of Darknet's blas.c that layers call on the CPU: shortcut_cpu, upsample_cpu, reorg_cpu,
softmax_cpu, and fill_cpu's zero.
"""
import math

import numba
import numpy as np

from ...activations import LINEAR
from ...jit import kernel
from .activations import activate, activate_value, flush_value


@kernel(parallel=True)
def _upsample(x, stride, scale, y):
    batch, channels, height, width = x.shape
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        for i in range(height * stride):
            for j in range(width * stride):
                y[b, c, i, j] = scale * x[b, c, i // stride, j // stride]


@kernel(parallel=True)
def _downsample(x, stride, scale, y, add):
    """y (+)= scale * each x of its stride x stride block, one term at a time in Darknet's order (upsample_cpu
    summing down: the reverse upsample's forward, and the upsample's backward with `add`)."""
    batch, channels, out_h, out_w = y.shape
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        for i in range(out_h):
            for j in range(out_w):
                s = y[b, c, i, j] if add else np.float32(0.0)
                for n in range(stride):
                    for m in range(stride):
                        s += scale * x[b, c, i * stride + n, j * stride + m]
                y[b, c, i, j] = s


def upsample_forward(x, stride, scale, reverse, y):
    """Darknet's upsample_cpu: nearest-neighbour x stride, or with reverse the scaled sum over each block."""
    if reverse:
        _downsample(x, stride, np.float32(scale), y, False)
    else:
        _upsample(x, stride, np.float32(scale), y)
    return y


def upsample_backward(delta, stride, scale, reverse, dx):
    """Darknet's backward_upsample_layer: the scaled sum of each block into dx; with reverse, dx is overwritten
    by the scaled nearest-neighbour enlargement of delta."""
    if reverse:
        _upsample(delta, stride, np.float32(scale), dx)
    else:
        _downsample(delta, stride, np.float32(scale), dx, True)
    return dx


@kernel(parallel=True)
def _reorg_flat(x, w, h, c, batch, stride, forward, out):
    """Darknet's reorg_cpu with its own index arithmetic (including the well-known reverse=0 quirk)."""
    out_c = c // (stride * stride)
    for bk in numba.prange(batch * c):
        b = bk // c
        k = bk % c
        c2 = k % out_c
        offset = k // out_c
        for j in range(h):
            for i in range(w):
                in_index = i + w * (j + h * (k + c * b))
                w2 = i * stride + offset % stride
                h2 = j * stride + offset // stride
                out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                if forward:
                    out[out_index] = x[in_index]
                else:
                    out[in_index] = x[out_index]


def reorg_forward(x, stride, reverse, y):
    """Darknet's forward_reorg_layer: reorg_cpu(input, l.w, l.h, l.c, batch, stride, forward=reverse, out)."""
    batch, c, h, w = x.shape
    _reorg_flat(x.reshape(-1), w, h, c, batch, stride, bool(reverse), y.reshape(-1))
    return y


def reorg_backward(delta, stride, reverse, dx):
    """Darknet's backward_reorg_layer: reorg_cpu with the direction flipped, written over dx."""
    batch, c, h, w = dx.shape
    _reorg_flat(delta.reshape(-1), w, h, c, batch, stride, not reverse, dx.reshape(-1))
    return dx


@kernel(parallel=True)
def _shortcut(add, alpha, beta, out):
    batch, c1, h1, w1 = add.shape
    _, c2, h2, w2 = out.shape
    stride = max(w1 // w2, 1)
    sample = max(w2 // w1, 1)
    minw, minh, minc = min(w1, w2), min(h1, h2), min(c1, c2)
    for bk in numba.prange(batch * minc):
        b = bk // minc
        k = bk % minc
        for j in range(minh):
            for i in range(minw):
                o = out[b, k, j * sample, i * sample]
                out[b, k, j * sample, i * sample] = alpha * o + beta * add[b, k, j * stride, i * stride]


@kernel(parallel=True)
def _shortcut_same(x, add, alpha, beta, a, out):
    for i in numba.prange(x.size):
        v = alpha * x[i] + beta * add[i]
        out[i] = flush_value(v if a == LINEAR else activate_value(v, a))


def shortcut_forward(x, add, alpha, beta, activation, out):
    """Darknet's forward_shortcut_layer: out = activation(alpha*x + beta*add), in one pass when the shapes agree.

    Otherwise shortcut_cpu's rule: add is sampled (or strided) to out's size, over the channels both have.
    """
    alpha, beta = np.float32(alpha), np.float32(beta)
    if add.shape == out.shape:
        _shortcut_same(x.reshape(-1), add.reshape(-1), alpha, beta, activation, out.reshape(-1))
        return out
    out[...] = x
    _shortcut(add, alpha, beta, out)
    return activate(out, activation)


def shortcut_backward(delta, alpha, beta, dx, source_delta):
    """Darknet's backward_shortcut_layer after the activation gradient: dx += alpha*delta, and delta (sampled as
    in shortcut_cpu) times beta into the source layer's delta."""
    dx += np.float32(alpha) * delta
    _shortcut(delta, np.float32(1.0), np.float32(beta), source_delta)
    return dx


@kernel(parallel=True)
def _softmax(x, n, groups, group_offset, stride, temperature, y):
    """Darknet's softmax_cpu over rows of x (B, inputs): `groups` softmaxes of n values each per row."""
    batch = x.shape[0]
    for bg in numba.prange(batch * groups):
        b = bg // groups
        g = bg % groups
        base = g * group_offset
        largest = np.float32(-3.4028234663852886e38)
        for i in range(n):
            v = x[b, base + i * stride]
            if v > largest:
                largest = v
        s = np.float32(0.0)
        for i in range(n):
            e = np.float32(math.exp(np.float64(x[b, base + i * stride] / temperature - largest / temperature)))
            s += e
            y[b, base + i * stride] = e
        for i in range(n):
            y[b, base + i * stride] /= s


def softmax_forward(x, n, groups, group_offset, stride, temperature, y):
    """Softmax of x (B, inputs) into y: Darknet's softmax_cpu with its batch/group/stride layout."""
    _softmax(x, n, groups, group_offset, stride, np.float32(temperature), y)
    return y


@kernel(parallel=True)
def _zero_array(x):
    n = x.size
    for piece in numba.prange((n + _ZERO_PIECE - 1) // _ZERO_PIECE):
        x[piece * _ZERO_PIECE:min(n, (piece + 1) * _ZERO_PIECE)] = 0.0


_ZERO_PIECE = 1 << 16


def zero(x):
    """In place: x = 0, on every thread (numpy's fill is one thread's memset: 2-3x slower on 26 MB deltas)."""
    if x.flags.c_contiguous:
        _zero_array(x.reshape(-1))
    else:
        x[...] = 0
    return x
