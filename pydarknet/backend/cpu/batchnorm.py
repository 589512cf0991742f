"""Batch normalization on the CPU: blas.c's mean_cpu and variance_cpu (batch_stats), and batchnorm_layer.c's
train-mode forward and backward passes, with Darknet's float32 sums in Darknet's order.
"""
import math

import numba
import numpy as np

from ...activations import LEAKY, LINEAR
from ...jit import kernel
from .activations import FLT_MIN, activate_value


@kernel(parallel=True)
def _channel_totals(x, start, total):
    """mean_cpu's sums over (B, C, N), in Darknet's order: one float32 sum per channel, element after element (the
    -Ofast build keeps it scalar), each starting from `start` (zero, or the sums of the images before these: the
    batch split over replicas is added up as one process adds it).

    That order matters: over the 2.8M values per channel of a batch of 16 at 416 x 416 these sums are off by up to
    0.3%, and the batch-norm backward pass turns differences of that size into 5-10% in the deltas (issue 23).
    Four channels run side by side in each thread: four independent chains of additions, 4x the speed of one."""
    batch, channels, size = x.shape
    for group in numba.prange((channels + 3) // 4):
        c0 = 4 * group      # a last group of fewer channels repeats its last one (same sums, same result)
        c1, c2, c3 = min(c0 + 1, channels - 1), min(c0 + 2, channels - 1), min(c0 + 3, channels - 1)
        s0, s1, s2, s3 = start[c0], start[c1], start[c2], start[c3]
        for b in range(batch):
            for i in range(size):
                s0 += x[b, c0, i]
                s1 += x[b, c1, i]
                s2 += x[b, c2, i]
                s3 += x[b, c3, i]
        for c, s in ((c3, s3), (c2, s2), (c1, s1), (c0, s0)):
            total[c] = s


@kernel(parallel=True)
def _channel_squares(x, mean, start, total):
    """variance_cpu's sums of squared deviations from `mean`, in its order (the squares taken and added in double,
    the sum rounded to float32 at each step), from `start` as _channel_totals."""
    batch, channels, size = x.shape
    for group in numba.prange((channels + 3) // 4):
        c0 = 4 * group
        c1, c2, c3 = min(c0 + 1, channels - 1), min(c0 + 2, channels - 1), min(c0 + 3, channels - 1)
        m0, m1, m2, m3 = mean[c0], mean[c1], mean[c2], mean[c3]
        v0, v1, v2, v3 = start[c0], start[c1], start[c2], start[c3]
        for b in range(batch):
            for i in range(size):
                v0 = _add_square(v0, x[b, c0, i] - m0)
                v1 = _add_square(v1, x[b, c1, i] - m1)
                v2 = _add_square(v2, x[b, c2, i] - m2)
                v3 = _add_square(v3, x[b, c3, i] - m3)
        for c, v in ((c3, v3), (c2, v2), (c1, v1), (c0, v0)):
            total[c] = v


@kernel(inline="always")
def _add_square(total, d):
    """variance_cpu's `variance[i] += pow(d, 2)`: pow and the addition in double, stored as float."""
    d = np.float64(d)
    return np.float32(np.float64(total) + d * d)


@kernel(parallel=True)
def _batchnorm_train(y, mean, variance, scales, biases, a, x, x_norm):
    """Train-mode batch-norm after the statistics: keep x, x_norm = (x - mean)/(sqrt(var) + .000001), then
    scale, bias and activation, one channel per thread."""
    batch, channels, size = y.shape
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        m = mean[c]
        d = math.sqrt(np.float64(variance[c])) + np.float64(np.float32(.000001))
        s = scales[c]
        bias = biases[c]
        k = np.float32(1.0 / d)
        for i in range(size):
            v = y[b, c, i]
            x[b, c, i] = v
            n = (v - m) * k
            x_norm[b, c, i] = n
            v = n * s + bias
            if a == LEAKY:
                v = v if v > 0 else np.float32(0.1) * v
            elif a != LINEAR:
                v = activate_value(v, a)
            y[b, c, i] = np.float32(0.0) if abs(v) < FLT_MIN else v   # NaN stays NaN


def batchnorm_train(y, mean, variance, scales, biases, activation, x=None, x_norm=None):
    """In place on y (B, C, ...): Darknet's train-mode batch-norm forward with the batch statistics given, then
    scale, bias and activation; returns the (x, x_norm) that its backward pass needs (in the buffers given, when
    they fit)."""
    shaped = y.reshape(y.shape[0], y.shape[1], -1)
    if x is None or x.shape != y.shape:
        x, x_norm = np.empty_like(y), np.empty_like(y)
    _batchnorm_train(shaped, mean, variance, scales, biases, activation, x.reshape(shaped.shape),
                     x_norm.reshape(shaped.shape))
    return x, x_norm


class _OneReplica:
    """The replicas of a batch-norm that trains alone: every sum starts from zero."""

    size = 1

    @staticmethod
    def relay(compute, like):
        return compute(np.zeros_like(like))


def batch_stats(x, replicas=None):
    """Per-channel mean and (unbiased) variance of x (B, C, ...), as Darknet's train-mode batch-norm takes them.

    replicas (synchronised batch-norm; parallel/replicas.py): x is one replica's share of the batch, and
    `replicas.relay(compute, like)` runs compute(start) with the sums of the replicas before this one and returns
    the last one's: the statistics of the whole batch, to the bit as one process adds them up."""
    shaped = x.reshape(x.shape[0], x.shape[1], -1)
    replicas = replicas or _OneReplica
    count = shaped.shape[0] * shaped.shape[2] * replicas.size
    like = np.empty(x.shape[1], np.float32)
    totals = replicas.relay(lambda start: _continued(_channel_totals, shaped, start), like)
    mean = totals * np.float32(1.0 / count)
    squares = replicas.relay(lambda start: _continued(_channel_squares, shaped, mean, start), like)
    return mean, squares * np.float32(1.0 / (count - 1))


def _continued(sums, *args):
    total = np.empty_like(args[-1])
    sums(*args, total)
    return total


@kernel(inline="always")
def _channel_sums(delta, x, x_norm, mean, scales, bias_updates, scale_updates, sums, c):
    """Channel c's backward_bias and backward_scale_cpu, delta times its scale, and mean_delta_cpu's and
    variance_delta_cpu's sums (into sums[:, c], before their factors), each added up in Darknet's order."""
    batch, _, size = delta.shape
    scale = scales[c]
    m = mean[c]
    total = np.float32(0.0)
    s = np.float32(0.0)
    mean_delta = sums[0, c]         # zero, or the sums of the replicas before this one
    variance_delta = sums[1, c]
    for b in range(batch):
        row = np.float32(0.0)
        for i in range(size):
            given = delta[b, c, i]
            row += given
            s += given * x_norm[b, c, i]
            d = given * scale
            delta[b, c, i] = d
            mean_delta += d
            variance_delta += d * (x[b, c, i] - m)
        total += row
    bias_updates[c] += total
    scale_updates[c] += s
    sums[0, c] = mean_delta
    sums[1, c] = variance_delta


@kernel(inline="always")
def _channel_delta(delta, x, mean, variance, sums, n, c):
    """Channel c's normalize_delta_cpu, with mean_delta's and variance_delta's factors (Darknet's doubles) applied
    to the sums over the n values of the batch (every replica's, under synchronised batch-norm)."""
    batch, _, size = delta.shape
    m = mean[c]
    v = np.float64(variance[c] + np.float32(.00001))
    mean_delta = np.float32(sums[0, c] * (-1.0 / math.sqrt(v)))
    variance_delta = np.float32(sums[1, c] * (-.5 * np.float64(np.float32(v) ** np.float32(-1.5))))
    inv = 1.0 / math.sqrt(v)
    spread = variance_delta * 2.0 / n       # normalize_delta_cpu's factors, divided once per channel
    shift = np.float64(mean_delta / np.float32(n))
    for b in range(batch):
        for i in range(size):
            delta[b, c, i] = np.float32(delta[b, c, i] * inv + spread * np.float64(x[b, c, i] - m) + shift)


@kernel(parallel=True)
def _bias_backward(delta, bias_updates):
    """backward_bias: bias_updates += each channel's sum of delta, one channel per thread."""
    batch, channels, size = delta.shape
    for c in numba.prange(channels):
        total = np.float32(0.0)
        for b in range(batch):
            s = np.float32(0.0)
            for i in range(size):
                s += delta[b, c, i]
            total += s
        bias_updates[c] += total


@kernel(parallel=True)
def _batchnorm_backward(delta, x, x_norm, mean, variance, scales, bias_updates, scale_updates, sums):
    """backward_bias, backward_scale_cpu, scale_bias, mean_delta_cpu, variance_delta_cpu and normalize_delta_cpu
    for one channel per thread, with Darknet's float32 accumulators and its double-precision factors."""
    batch, channels, size = delta.shape
    for c in numba.prange(channels):
        _channel_sums(delta, x, x_norm, mean, scales, bias_updates, scale_updates, sums, c)
        _channel_delta(delta, x, mean, variance, sums, batch * size, c)


@kernel(parallel=True)
def _batchnorm_sums(delta, x, x_norm, mean, scales, bias_updates, scale_updates, sums):
    for c in numba.prange(delta.shape[1]):
        _channel_sums(delta, x, x_norm, mean, scales, bias_updates, scale_updates, sums, c)


@kernel(parallel=True)
def _batchnorm_delta(delta, x, mean, variance, sums, n):
    for c in numba.prange(delta.shape[1]):
        _channel_delta(delta, x, mean, variance, sums, n, c)


def batchnorm_backward(delta, x, x_norm, mean, variance, scales, bias_updates, scale_updates, replicas=None):
    """In place on delta (B, C, ...): Darknet's backward_batchnorm_layer (or backward_bias alone when x is None).

    replicas (synchronised batch-norm; parallel/replicas.py): mean_delta's and variance_delta's sums run on over
    the replicas in order (`replicas.relay`, as in batch_stats) and are divided by every replica's count of
    values, as the statistics were."""
    shaped = delta.reshape(delta.shape[0], delta.shape[1], -1)
    if x is None:
        _bias_backward(shaped, bias_updates)
        return delta
    x = x.reshape(shaped.shape)
    x_norm = x_norm.reshape(shaped.shape)
    sums = np.zeros((2, shaped.shape[1]), np.float32)
    if replicas is None:
        _batchnorm_backward(shaped, x, x_norm, mean, variance, scales, bias_updates, scale_updates, sums)
        return delta

    def continued(start):
        _batchnorm_sums(shaped, x, x_norm, mean, scales, bias_updates, scale_updates, start)
        return start
    sums = replicas.relay(continued, sums)
    _batchnorm_delta(shaped, x, mean, variance, sums, shaped.shape[0] * shaped.shape[2] * replicas.size)
    return delta
