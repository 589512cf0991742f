"""Slow, obvious float64 numpy oracles: one per layer kernel and loss, written from Darknet's C, not from pydarknet.

Every function takes and returns float64 NCHW arrays and allocates its own output; none of them is fast. The
tests first check that each oracle's forward equals the pydarknet layer's float32 forward, then differentiate the
oracle numerically (central differences in float64) to check the layer's backward pass.
"""
import math

import numpy as np

FLT_MAX = 3.4028234663852886e38

# ---- activations (activations.h): the value, and Darknet's gradient written in terms of the OUTPUT ----------

SELU_LAMBDA, SELU_ALPHA = 1.0507, 1.6732


def _stair(x):
    n = math.floor(x)
    if int(n) % 2 == 0:                  # C's n%2 is -1 for odd negative n: also "not 0", the same branch
        return math.floor(x / 2.0)
    return (x - n) + math.floor(x / 2.0)


def activate(x, name):
    """Darknet's <name>_activate, element by element, in float64."""
    x = np.asarray(x, np.float64)
    if name == "linear":
        return x.copy()
    if name == "leaky":
        return np.where(x > 0, x, .1 * x)
    if name == "relu":
        return np.where(x > 0, x, 0.0)
    if name == "logistic":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "loggy":
        return 2.0 / (1.0 + np.exp(-x)) - 1.0
    if name == "relie":
        return np.where(x > 0, x, .01 * x)
    if name == "ramp":
        return np.where(x > 0, x, 0.0) + .1 * x
    if name == "tanh":
        return np.tanh(x)
    if name == "plse":
        return np.where(x < -4, .01 * (x + 4), np.where(x > 4, .01 * (x - 4) + 1, .125 * x + .5))
    if name == "elu":
        return np.where(x >= 0, x, np.expm1(np.minimum(x, 0)))
    if name == "lhtan":
        return np.where(x < 0, .001 * x, np.where(x > 1, .001 * (x - 1) + 1, x))
    if name == "hardtan":
        return np.clip(x, -1.0, 1.0)
    if name == "stair":
        return np.vectorize(_stair, otypes=[np.float64])(x)
    if name == "selu":
        return np.where(x >= 0, SELU_LAMBDA * x, SELU_LAMBDA * SELU_ALPHA * np.expm1(np.minimum(x, 0)))
    raise ValueError(name)


def gradient(y, name):
    """Darknet's <name>_gradient(y): the derivative expressed through the activated output y, as the C has it."""
    y = np.asarray(y, np.float64)
    if name == "linear":
        return np.ones_like(y)
    if name == "leaky":
        return np.where(y > 0, 1.0, .1)
    if name == "relu":
        return np.where(y > 0, 1.0, 0.0)
    if name == "logistic":
        return (1 - y) * y
    if name == "loggy":
        v = (y + 1) / 2
        return 2 * (1 - v) * v
    if name == "relie":
        return np.where(y > 0, 1.0, .01)
    if name == "ramp":
        return np.where(y > 0, 1.1, .1)
    if name == "tanh":
        return 1 - y * y
    if name == "plse":
        return np.where((y < 0) | (y > 1), .01, .125)
    if name == "elu":
        return np.where(y >= 0, 1.0, y + 1)
    if name == "lhtan":
        return np.where((y > 0) & (y < 1), 1.0, .001)
    if name == "hardtan":
        return np.where((y > -1) & (y < 1), 1.0, 0.0)
    if name == "stair":
        return np.where(np.floor(y) == y, 0.0, 1.0)
    if name == "selu":
        return np.where(y >= 0, SELU_LAMBDA, y + SELU_LAMBDA * SELU_ALPHA)
    raise ValueError(name)


def kink_distance(x, name):
    """How far each pre-activation x lies from the nearest point where the activation is not differentiable
    (inf for the smooth ones); finite differences are only meaningful away from these points."""
    x = np.asarray(x, np.float64)
    kinks = {"leaky": [0.0], "relu": [0.0], "relie": [0.0], "ramp": [0.0], "elu": [0.0], "selu": [0.0],
             "plse": [-4.0, 4.0], "lhtan": [0.0, 1.0], "hardtan": [-1.0, 1.0]}
    if name == "stair":
        return np.abs(x - np.round(x))
    if name not in kinks:
        return np.full(x.shape, np.inf)
    return np.min([np.abs(x - k) for k in kinks[name]], axis=0)


# ---- batch normalisation ------------------------------------------------------------------------------------

def _per_channel(v, like):
    return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (like.ndim - 2))


def batch_statistics(z):
    """Darknet's mean_cpu and variance_cpu: over batch and space, the variance divided by n - 1."""
    axes = (0,) + tuple(range(2, z.ndim))
    n = z.size // z.shape[1]
    mean = z.mean(axis=axes)
    variance = ((z - _per_channel(mean, z)) ** 2).sum(axis=axes) / (n - 1)
    return mean, variance


def batchnorm(z, scales, biases):
    """Darknet's train-mode forward_batchnorm_layer (without the activation): batch statistics, normalised by
    sqrt(var) + .000001, then scales and biases."""
    mean, variance = batch_statistics(z)
    x_norm = (z - _per_channel(mean, z)) / (np.sqrt(_per_channel(variance, z)) + .000001)
    return x_norm * _per_channel(scales, z) + _per_channel(biases, z)


def batchnorm_inference(z, scales, biases, rolling_mean, rolling_variance):
    """forward_batchnorm_layer at inference: normalize_cpu with the rolling statistics (sqrt(var) + .000001), then
    scale_bias and add_bias."""
    x_norm = (z - _per_channel(rolling_mean, z)) / (np.sqrt(_per_channel(rolling_variance, z)) + .000001)
    return x_norm * _per_channel(scales, z) + _per_channel(biases, z)


def variance_offset(z):
    """Per channel, the unbiased minus the biased variance of z; see batchnorm_as_differentiated."""
    mean, variance = batch_statistics(z)
    axes = (0,) + tuple(range(2, z.ndim))
    return variance - ((z - _per_channel(mean, z)) ** 2).mean(axis=axes)


def batchnorm_as_differentiated(z, scales, biases, offset):
    """The forward whose exact derivative Darknet's backward_batchnorm_layer computes.

    Darknet's backward is not the derivative of its own forward, in two ways:
      * it divides by sqrt(var + .00001) (mean_delta_cpu, variance_delta_cpu, normalize_delta_cpu) where the
        forward divides by sqrt(var) + .000001;
      * normalize_delta_cpu differentiates the variance as 2 (x - mean) / (batch * spatial), the derivative of the
        BIASED variance, while variance_cpu divides by batch * spatial - 1.
    Both are kept by pydarknet (and checked here). This forward has them: the biased variance plus `offset`, a
    per-channel constant that the caller sets to variance_offset(z) at the point where the gradient is taken, so
    that there the variance is Darknet's unbiased one; and .00001 inside the square root.
    """
    axes = (0,) + tuple(range(2, z.ndim))
    mean = z.mean(axis=axes)
    centred = z - _per_channel(mean, z)
    variance = (centred ** 2).mean(axis=axes) + offset
    x_norm = centred / np.sqrt(_per_channel(variance, z) + .00001)
    return x_norm * _per_channel(scales, z) + _per_channel(biases, z)


def normalize(z, scales, biases, batch_normalize, variant="forward", offset=None):
    """Bias only, or train-mode batch-norm: Darknet's forward ("forward") or the differentiated form ("backward")."""
    if not batch_normalize:
        return z + _per_channel(biases, z)
    if variant == "forward":
        return batchnorm(z, scales, biases)
    return batchnorm_as_differentiated(z, scales, biases, offset)


# ---- layers -------------------------------------------------------------------------------------------------

def convolution(x, weights, size, stride, pad, groups=1):
    """Darknet's convolution (im2col + GEMM per group), without bias: weights (filters, c/groups*size*size) in
    (channel, row, column) order; zero padding of `pad` on every side."""
    batch, c, h, w = x.shape
    filters = weights.shape[0]
    cg, ng = c // groups, filters // groups
    out_h = (h + 2 * pad - size) // stride + 1
    out_w = (w + 2 * pad - size) // stride + 1
    kernel = np.asarray(weights, np.float64).reshape(filters, cg, size, size)
    padded = np.zeros((batch, c, h + 2 * pad + size, w + 2 * pad + size))
    padded[:, :, pad:pad + h, pad:pad + w] = x
    y = np.zeros((batch, filters, out_h, out_w))
    for g in range(groups):
        for ky in range(size):
            for kx in range(size):
                # input pixel (ky + i*stride - pad, kx + j*stride - pad) for output (i, j)
                patch = padded[:, g * cg:(g + 1) * cg, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride]
                y[:, g * ng:(g + 1) * ng] += np.einsum("fc,bcij->bfij", kernel[g * ng:(g + 1) * ng, :, ky, kx], patch)
    return y


def convolutional(x, weights, biases, size, stride, pad, groups, activation, batch_normalize=0, scales=None,
                  variant="forward", offset=None):
    """forward_convolutional_layer: convolution, bias or train-mode batch-norm, activation."""
    z = convolution(x, weights, size, stride, pad, groups)
    return activate(normalize(z, scales, biases, batch_normalize, variant, offset), activation)


def connected(x, weights, biases, activation, batch_normalize=0, scales=None, variant="forward", offset=None):
    """forward_connected_layer: y = x W^T, then bias or batch-norm (per output, over the batch), activation."""
    batch = x.shape[0]
    z = (x.reshape(batch, -1) @ np.asarray(weights, np.float64).T).reshape(batch, -1, 1, 1)
    return activate(normalize(z, scales, biases, batch_normalize, variant, offset), activation)


def local(x, weights, biases, filters, size, stride, pad, activation):
    """forward_local_layer: at output location (i, j) its own (filters x c*size*size) weight block applied to the
    window at (i*stride - pad, j*stride - pad); biases one per output value. `pad` is Darknet's flag: with it the
    output keeps the input size, whatever the kernel size."""
    batch, c, h, w = x.shape
    out_h = (h - (1 if pad else size)) // stride + 1
    out_w = (w - (1 if pad else size)) // stride + 1
    k = c * size * size
    blocks = np.asarray(weights, np.float64).reshape(out_h * out_w, filters, k)
    padded = np.zeros((batch, c, h + 2 * pad + size * stride, w + 2 * pad + size * stride))
    padded[:, :, pad:pad + h, pad:pad + w] = x
    y = np.broadcast_to(np.asarray(biases, np.float64).reshape(1, filters, out_h, out_w),
                        (batch, filters, out_h, out_w)).copy()
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, :, i * stride:i * stride + size, j * stride:j * stride + size].reshape(batch, k)
            y[:, :, i, j] += window @ blocks[i * out_w + j].T
    return activate(y, activation)


def maxpool(x, size, stride, padding):
    """forward_maxpool_layer: windows start at -padding/2, positions outside the image count as -FLT_MAX."""
    batch, c, h, w = x.shape
    out_h = (h + padding - size) // stride + 1
    out_w = (w + padding - size) // stride + 1
    offset = -(padding // 2)
    y = np.empty((batch, c, out_h, out_w))
    for b in range(batch):
        for k in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    best = -FLT_MAX
                    for n in range(size):
                        for m in range(size):
                            row, col = offset + i * stride + n, offset + j * stride + m
                            value = x[b, k, row, col] if 0 <= row < h and 0 <= col < w else -FLT_MAX
                            best = max(best, value)
                    y[b, k, i, j] = best
    return y


def avgpool(x):
    """forward_avgpool_layer: the mean of each channel, output (B, C, 1, 1)."""
    return x.mean(axis=(2, 3), keepdims=True)


def route(parts):
    """forward_route_layer: the routed outputs one after the other along channels."""
    return np.concatenate(parts, axis=1)


def shortcut(x, add, alpha, beta, activation):
    """forward_shortcut_layer: out = x, then shortcut_cpu (out = alpha*out + beta*add at the sampled positions of
    the channels both have, add stepped by the ratio of the widths), then the activation."""
    batch, c1, h1, w1 = add.shape
    _, c2, h2, w2 = x.shape
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    out = np.array(x, np.float64)
    for b in range(batch):
        for k in range(min(c1, c2)):
            for j in range(min(h1, h2)):
                for i in range(min(w1, w2)):
                    out[b, k, j * sample, i * sample] = (alpha * out[b, k, j * sample, i * sample]
                                                         + beta * add[b, k, j * stride, i * stride])
    return activate(out, activation)


def upsample(x, stride, scale, reverse):
    """forward_upsample_layer: nearest-neighbour enlargement times scale; with reverse (a negative stride in the
    cfg) the scaled sum over each stride x stride block instead."""
    batch, c, h, w = x.shape
    if not reverse:
        y = np.empty((batch, c, h * stride, w * stride))
        for i in range(h * stride):
            for j in range(w * stride):
                y[:, :, i, j] = scale * x[:, :, i // stride, j // stride]
        return y
    y = np.zeros((batch, c, h // stride, w // stride))
    for i in range((h // stride) * stride):
        for j in range((w // stride) * stride):
            y[:, :, i // stride, j // stride] += scale * x[:, :, i, j]
    return y


def flatten(x, size, layers, forward):
    """blas.c flatten(x, size, layers, batch, forward), index for index: forward moves x[b][c][i] to [b][i][c]."""
    flat = x.reshape(len(x), -1)
    out = np.empty_like(flat)
    for b in range(len(x)):
        for c in range(layers):
            for i in range(size):
                i1, i2 = c * size + i, i * layers + c
                if forward:
                    out[b, i2] = flat[b, i1]
                else:
                    out[b, i1] = flat[b, i2]
    return out


def reorg(x, stride, reverse):
    """forward_reorg_layer: reorg_cpu(input, w, h, c, batch, stride, forward=reverse, output), index for index,
    with w, h, c the INPUT's sizes in both directions (so reverse=0 is the inverse of Darknet's own "forward")."""
    batch, c, h, w = x.shape
    flat = x.reshape(-1)
    out = np.empty(x.size)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2 = k % out_c
                    offset = k // out_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if reverse:
                        out[out_index] = flat[in_index]
                    else:
                        out[in_index] = flat[out_index]
    if reverse:
        return out.reshape(batch, out_c, h * stride, w * stride)
    return out.reshape(batch, c * stride * stride, h // stride, w // stride)


def dropout(x, rand, probability):
    """forward_dropout_layer in training, given its uniform draws: 0 where rand < probability, else x / (1 - p)."""
    return np.where(rand < probability, 0.0, x * (1.0 / (1.0 - probability)))


def softmax(x, groups, temperature):
    """softmax_cpu over each of `groups` consecutive slices of every row: exp(x/T - max/T), normalised."""
    batch = x.shape[0]
    flat = x.reshape(batch, groups, -1)
    e = np.exp(flat / temperature - flat.max(axis=2, keepdims=True) / temperature)
    return (e / e.sum(axis=2, keepdims=True)).reshape(x.shape)


def softmax_cross_entropy(p, truth):
    """softmax_x_ent_cpu: the loss -log(p) where the truth is set, and delta = truth - p."""
    with np.errstate(divide="ignore"):
        loss = np.where(truth != 0, -np.log(np.where(truth != 0, p, 1.0)), 0.0)
    return loss, truth - p


def logistic_cross_entropy(p, truth):
    """logistic_x_ent_cpu: the loss -t log(p) - (1 - t) log(1 - p) of each value, and delta = truth - p."""
    return -truth * np.log(p) - (1 - truth) * np.log(1 - p), truth - p


def cost(x, truth, cost_type="sse"):
    """forward_cost_layer: the per-value error and delta of l2_cpu (sse), l1_cpu or smooth_l1_cpu.

    smooth_l1_cpu's delta for |diff| >= 1 has the opposite sign of its own error's negative gradient; Darknet's."""
    diff = truth - x
    if cost_type == "sse":
        return diff * diff, diff
    if cost_type == "L1":
        return np.abs(diff), np.where(diff > 0, 1.0, -1.0)
    if cost_type == "smooth":
        small = np.abs(diff) < 1
        return (np.where(small, diff * diff, 2 * np.abs(diff) - 1),
                np.where(small, diff, np.where(diff < 0, 1.0, -1.0)))
    raise ValueError(cost_type)


def crop(x, out_h, out_w, dh, dw, flip, noadjust):
    """forward_crop_layer for a given offset and flip: row i + dh, column j + dw (or w - dw - j - 1 flipped),
    times 2 minus 1 unless noadjust."""
    batch, c, h, w = x.shape
    scale, trans = (1.0, 0.0) if noadjust else (2.0, -1.0)
    y = np.empty((batch, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            col = w - dw - j - 1 if flip else j + dw
            y[:, :, i, j] = x[:, :, i + dh, col] * scale + trans
    return y
