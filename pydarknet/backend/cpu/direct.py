"""Direct 3x3 convolution (stride 1, pad 1) for layers with few input channels: no column matrix.

Why: with 3-16 input channels im2col writes 27-144 column rows that the GEMM then reads once, and its short inner
dimension leaves BLAS at 15-30 GFLOP/s on one core here; the loops below reach 40-50 (the yolov3-tiny-shapes
demo's first layers, yolov3-tiny's at 416). Each image is copied once, zero-padded, into rows Wp = W + 2 floats
long, so that a 3x3 window is nine fixed offsets from a pixel's index and one flat loop covers a band of rows
(two columns of each row are computed and dropped). The weight gradient and the input gradient use the same
layout: delta padded the same way is both the factor of the filter sums and the input of the turned convolution
that gives dx (input and output channels swapped, each filter turned 180 degrees).

The forward pass (rows at least 16 wide) sums blocks of 4 filters x 16 pixels in eight vector registers
(simd.py) over every channel and tap, and writes each output once: with the inference epilogue (batch-norm, bias,
activation) applied, and, where a 2x2 stride-2 maxpool follows, pooled (two convolution rows make one pooled row);
140-150 GFLOP/s on 2 threads here for yolov3-tiny's 16- and 32-channel layers at 208 and 104, against 80-90 for
the band loops below, which remain for narrow rows and the backward pass.

CPU-only, and not an op of the backend interface (ops.py): cpu.convolution_forward and _backward call it where
`applies` says so. Sums run in a different order from Darknet's GEMM: equal within float32 rounding.
"""
import numba
import numpy as np

from ... import settings
from ...activations import LEAKY
from ...jit import kernel, vector_kernel
from . import simd, threads
from .activations import epilogue_arguments

_BAND_FLOATS = 2048     # outputs per channel made at a time: 4 channels' bands stay in the core's L1 cache


def applies(channels, size, stride, pad, groups):
    """Few input channels (PYDARKNET_DIRECT_MAX_CHANNELS): there the column matrix costs more than it saves."""
    return size == 3 and stride == 1 and pad == 1 and groups == 1 and channels <= settings.direct_max_channels()


def _padded_size(height, width):
    """Floats of one padded channel: H + 2 rows of W + 2, and one more row that the dropped columns of the last
    band read into."""
    return (height + 3) * (width + 2)


@kernel(parallel=True)
def _pad(x, out):
    """out (B, C, L): each channel of x (B, C, H, W) inside a border of zeros, rows W + 2 floats long."""
    batch, channels, height, width = x.shape
    wp = width + 2
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        plane = out[b, c]
        plane[:wp] = 0.0
        for i in range(height):
            row = plane[(i + 1) * wp:(i + 2) * wp]
            row[0] = 0.0
            row[1:width + 1] = x[b, c, i]
            row[width + 1] = 0.0
        plane[(height + 1) * wp:] = 0.0


@vector_kernel(inline="always")
def _taps(v, w, p0, p1, p2, p3, p4, p5, p6, p7, p8):
    """v + the 3x3 window p0..p8 weighted by w (9 floats), added one after the other (fused multiply-adds)."""
    v += w[0] * p0
    v += w[1] * p1
    v += w[2] * p2
    v += w[3] * p3
    v += w[4] * p4
    v += w[5] * p5
    v += w[6] * p6
    v += w[7] * p7
    v += w[8] * p8
    return v


@kernel(inline="always")
def _filter(w, k, c):
    """Filter (k, c) of w (K, C, 3, 3) as 9 floats, row by row."""
    g = w[k, c]
    return g[0, 0], g[0, 1], g[0, 2], g[1, 0], g[1, 1], g[1, 2], g[2, 0], g[2, 1], g[2, 2]


@vector_kernel
def _convolve_band(xp, wp, w, y, band, first, last, add):
    """y (K, H, W) rows first..last-1 = (with `add`: +=) the convolution of the padded image xp (C, L) with w
    (K, C, 3, 3); band (4, >= rows * wp) holds four channels' outputs at a time."""
    filters, height, width = y.shape
    channels = xp.shape[0]
    n = (last - first) * wp
    start = first * wp
    for k0 in range(0, filters, 4):
        count = min(4, filters - k0)
        o0, o1, o2, o3 = band[0, :n], band[1, :n], band[2, :n], band[3, :n]
        o0[:] = 0.0
        o1[:] = 0.0
        o2[:] = 0.0
        o3[:] = 0.0
        for c in range(channels):
            r0 = xp[c, start:start + n + 2]
            r1 = xp[c, start + wp:start + wp + n + 2]
            r2 = xp[c, start + 2 * wp:start + 2 * wp + n + 2]
            w0 = _filter(w, k0, c)       # a missing channel of the last group of four repeats the first
            w1 = _filter(w, k0 + 1 if count > 1 else k0, c)
            w2 = _filter(w, k0 + 2 if count > 2 else k0, c)
            w3 = _filter(w, k0 + 3 if count > 3 else k0, c)
            for f in range(n):
                p0, p1, p2 = r0[f], r0[f + 1], r0[f + 2]
                p3, p4, p5 = r1[f], r1[f + 1], r1[f + 2]
                p6, p7, p8 = r2[f], r2[f + 1], r2[f + 2]
                o0[f] = _taps(o0[f], w0, p0, p1, p2, p3, p4, p5, p6, p7, p8)
                o1[f] = _taps(o1[f], w1, p0, p1, p2, p3, p4, p5, p6, p7, p8)
                o2[f] = _taps(o2[f], w2, p0, p1, p2, p3, p4, p5, p6, p7, p8)
                o3[f] = _taps(o3[f], w3, p0, p1, p2, p3, p4, p5, p6, p7, p8)
        for q in range(count):
            o = band[q]
            for i in range(first, last):
                out = y[k0 + q, i]
                row = o[(i - first) * wp:(i - first) * wp + width]
                for j in range(width):
                    out[j] = out[j] + row[j] if add else row[j]


@vector_kernel(inline="always")
def _window_sums(s, d, p0, p1, p2, p3, p4, p5, p6, p7, p8):
    """The 9 running sums s (a tuple) plus d times the window p0..p8."""
    return (s[0] + d * p0, s[1] + d * p1, s[2] + d * p2, s[3] + d * p3, s[4] + d * p4, s[5] + d * p5,
            s[6] + d * p6, s[7] + d * p7, s[8] + d * p8)


@vector_kernel
def _add_filter_sums(xp, dp, wp, n, sums):
    """sums (K, C, 9) += for each filter tap, the sum over the image of delta times the input it saw: dp is delta
    padded as xp (K, L), so delta at output index f (rows wp long) is dp[wp + 1 + f], and zero in the two dropped
    columns. Two filters at a time share the input's loads."""
    filters, channels = dp.shape[0], xp.shape[0]
    zero = np.float32(0.0)
    for k0 in range(0, filters, 2):
        k1 = min(k0 + 1, filters - 1)       # an odd last filter is summed twice and added once
        d0 = dp[k0, wp + 1:wp + 1 + n]
        d1 = dp[k1, wp + 1:wp + 1 + n]
        for c in range(channels):
            r0 = xp[c, 0:n + 2]
            r1 = xp[c, wp:wp + n + 2]
            r2 = xp[c, 2 * wp:2 * wp + n + 2]
            a = (zero, zero, zero, zero, zero, zero, zero, zero, zero)
            b = a
            for f in range(n):
                p0, p1, p2 = r0[f], r0[f + 1], r0[f + 2]
                p3, p4, p5 = r1[f], r1[f + 1], r1[f + 2]
                p6, p7, p8 = r2[f], r2[f + 1], r2[f + 2]
                a = _window_sums(a, d0[f], p0, p1, p2, p3, p4, p5, p6, p7, p8)
                b = _window_sums(b, d1[f], p0, p1, p2, p3, p4, p5, p6, p7, p8)
            for t in range(9):
                sums[k0, c, t] += a[t]
                if k1 != k0:
                    sums[k1, c, t] += b[t]


# ---- the forward pass: blocks of 4 filters x 16 pixels summed in eight vector registers ------------------------

_BLOCK = 2 * simd.LANES     # pixels of a row in a block: two vectors
_FILTERS = 4                # filters in a block: 4 x 2 accumulators, 2 inputs, 4 weights


def fits(width):
    """Rows at least a block wide: the forward's register blocks (a row's last block is moved back to end at its
    last pixel and computes a few pixels twice)."""
    return width >= _BLOCK


def pack(weights, channels):
    """weights (K, C*9) as (K/4 groups, C, 9, 4): a block's four filter values at each tap side by side (a missing
    filter of the last group weighs zero)."""
    filters = weights.shape[0]
    groups = -(-filters // _FILTERS)
    packed = np.zeros((groups * _FILTERS, channels * 9), np.float32)
    packed[:filters] = weights.reshape(filters, -1)
    return np.ascontiguousarray(packed.reshape(groups, _FILTERS, channels, 9).transpose(0, 2, 3, 1)).reshape(-1)


@vector_kernel(inline="always")
def _tap(a, x, at, w, wi):
    """The block's 8 sums a + the 4 filters' weights w[wi:wi + 4] times the 16 inputs x[at:at + 16]."""
    x0, x1 = simd.load(x, at), simd.load(x, at + 8)
    w0, w1, w2, w3 = simd.splat(w[wi]), simd.splat(w[wi + 1]), simd.splat(w[wi + 2]), simd.splat(w[wi + 3])
    return (simd.multiply_add(w0, x0, a[0]), simd.multiply_add(w0, x1, a[1]),
            simd.multiply_add(w1, x0, a[2]), simd.multiply_add(w1, x1, a[3]),
            simd.multiply_add(w2, x0, a[4]), simd.multiply_add(w2, x1, a[5]),
            simd.multiply_add(w3, x0, a[6]), simd.multiply_add(w3, x1, a[7]))


@vector_kernel(inline="always")
def _finish(v, mean, scale, bias, activation):
    """The epilogue of a vector of sums: batch-norm and bias, the activation (LEAKY or LINEAR; any other: none),
    denormals to zero, as activations.py's _bias_activate does it."""
    v = simd.affine(v, mean, scale, bias)
    if activation == LEAKY:
        v = simd.leaky(v)
    return simd.zero_denormals(v)


@vector_kernel(inline="always")
def _block_sums(flat, packed, g, start, wp, channels, length):
    """The 8 vectors of sums of filter group g over the 16 outputs from padded index `start`: all channels'
    nine taps."""
    z = simd.zeros()
    a = (z, z, z, z, z, z, z, z)
    for c in range(channels):
        at = c * length + start
        wi = (g * channels + c) * 9 * _FILTERS
        w = packed[wi:wi + 9 * _FILTERS]    # constant indices below: no wraparound tests
        a = _tap(a, flat, at, w, 0)
        a = _tap(a, flat, at + 1, w, 4)
        a = _tap(a, flat, at + 2, w, 8)
        a = _tap(a, flat, at + wp, w, 12)
        a = _tap(a, flat, at + wp + 1, w, 16)
        a = _tap(a, flat, at + wp + 2, w, 20)
        a = _tap(a, flat, at + 2 * wp, w, 24)
        a = _tap(a, flat, at + 2 * wp + 1, w, 28)
        a = _tap(a, flat, at + 2 * wp + 2, w, 32)
    return a


@vector_kernel(inline="always")
def _block_views(xp, packed, y):
    """What both block kernels read: the padded image's channels and plane length, the image and the output as
    flat arrays, and the number of filter groups in `packed`."""
    channels, length = xp.shape
    return channels, length, xp.reshape(-1), packed.size // (channels * 9 * _FILTERS), y.reshape(-1)


@vector_kernel
def _forward_rows(xp, packed, y, first, last, mean, scale, bias, activation, finish):
    """y (K, H, W) rows first..last-1 = the convolution of the padded image xp (C, L) with the packed filters;
    with `finish`, (sum - mean) * scale + bias, activated, else the plain sums."""
    filters, height, width = y.shape
    channels, length, flat, groups, out = _block_views(xp, packed, y)
    wp = width + 2
    for i in range(first, last):
        for j0 in range(0, width, _BLOCK):
            j = min(j0, width - _BLOCK)
            for g in range(groups):
                a = _block_sums(flat, packed, g, i * wp + j, wp, channels, length)
                for q in range(min(_FILTERS, filters - g * _FILTERS)):
                    k = g * _FILTERS + q
                    o = (k * height + i) * width + j
                    for v in range(2):
                        s = a[2 * q + v]
                        if finish:
                            s = _finish(s, mean[k], scale[k], bias[k], activation)
                        simd.store(out, o + 8 * v, s)


@vector_kernel(inline="always")
def _pooled_top(a, g, filters, mean, scale, bias, activation):
    """The upper row's half of each of the block's 4 pooled vectors (simd.pool_row from -FLT_MAX over the finished
    sums a): 4 vectors where the upper row's 8 were, so that the lower row's sums have the registers. A filter
    missing from the last group reads the last filter's epilogue (its result is never stored)."""
    k0 = g * _FILTERS
    k1, k2, k3 = min(k0 + 1, filters - 1), min(k0 + 2, filters - 1), min(k0 + 3, filters - 1)
    low = simd.lowest()
    return (simd.pool_row(low, _finish(a[0], mean[k0], scale[k0], bias[k0], activation),
                          _finish(a[1], mean[k0], scale[k0], bias[k0], activation)),
            simd.pool_row(low, _finish(a[2], mean[k1], scale[k1], bias[k1], activation),
                          _finish(a[3], mean[k1], scale[k1], bias[k1], activation)),
            simd.pool_row(low, _finish(a[4], mean[k2], scale[k2], bias[k2], activation),
                          _finish(a[5], mean[k2], scale[k2], bias[k2], activation)),
            simd.pool_row(low, _finish(a[6], mean[k3], scale[k3], bias[k3], activation),
                          _finish(a[7], mean[k3], scale[k3], bias[k3], activation)))


@vector_kernel
def _forward_pooled_rows(xp, packed, y, first, last, mean, scale, bias, activation):
    """y (K, H/2, W/2) rows first..last-1 = the 2x2 stride-2 max pool of the finished convolution (as
    _forward_rows's), each pooled row from its two convolution rows, block by block: the convolution's own output
    is never written."""
    filters, pooled_h, pooled_w = y.shape
    channels, length, flat, groups, out = _block_views(xp, packed, y)
    width = 2 * pooled_w
    wp = width + 2
    for i in range(first, last):
        for j0 in range(0, width, _BLOCK):
            j = min(j0, width - _BLOCK)        # even: the pooled blocks stay aligned
            for g in range(groups):
                top = _pooled_top(_block_sums(flat, packed, g, 2 * i * wp + j, wp, channels, length), g, filters,
                                  mean, scale, bias, activation)
                bottom = _block_sums(flat, packed, g, (2 * i + 1) * wp + j, wp, channels, length)
                for q in range(min(_FILTERS, filters - g * _FILTERS)):
                    k = g * _FILTERS + q
                    m, s, b = mean[k], scale[k], bias[k]
                    best = simd.pool_row(top[q], _finish(bottom[2 * q], m, s, b, activation),
                                         _finish(bottom[2 * q + 1], m, s, b, activation))
                    simd.store(out, (k * pooled_h + i) * pooled_w + j // 2, best)


def forward(x, packed, y, epilogue=None, pool=False):
    """y (B, K, H, W) = the 3x3 convolution (stride 1, pad 1) of x (B, C, H, W) with filters `pack` made, rows
    `fits`; `epilogue` (mean, scale, bias, activation: per filter, LEAKY or LINEAR) applied as each block is
    written. With `pool` (an epilogue given, H and W even), y (B, K, H/2, W/2) gets the 2x2 stride-2 max pool of
    that instead. The images' bands of rows are the pieces Numba's threads share out."""
    per_piece = max(1, -(-y.shape[2] // (4 * threads.threads())))
    _forward_bands(_padded(x, "input"), packed, y, per_piece, *epilogue_arguments(epilogue, packed), pool)
    return y


@vector_kernel(parallel=True)
def _forward_bands(xp, packed, y, per_piece, mean, scale, bias, activation, finish, pool):
    """forward's pieces, bands of `per_piece` rows of each image, shared out over Numba's threads."""
    batch, height = y.shape[0], y.shape[2]
    bands = -(-height // per_piece)
    for p in numba.prange(batch * bands):
        b = p // bands
        first = (p % bands) * per_piece
        last = min(height, first + per_piece)
        if pool:
            _forward_pooled_rows(xp[b], packed, y[b], first, last, mean, scale, bias, activation)
        else:
            _forward_rows(xp[b], packed, y[b], first, last, mean, scale, bias, activation, finish)


def _padded(x, name):
    """x (B, C, H, W) padded into the calling thread's buffer `name`: (B, C, L)."""
    batch, channels, height, width = x.shape
    out = threads.buffer(batch * channels * _padded_size(height, width), name).reshape(batch, channels, -1)
    _pad(x, out)
    return out


def _convolve(xp, w, y, add):
    """y (B, K, H, W) = (+=) the convolution of padded images xp (B, C, L) with w (K, C, 3, 3), the images, or for
    fewer images than threads bands of rows, shared out as pieces."""
    batch, _, height, width = y.shape
    wp = width + 2
    rows = max(1, _BAND_FLOATS // wp)
    bands = -(-height // rows)
    per_image = 1 if batch >= 2 * threads.threads() else min(bands, -(-2 * threads.threads() // batch))
    step = -(-bands // per_image) * rows

    def piece(i):
        b, part = divmod(i, per_image)
        band = threads.buffer(4 * rows * wp, "band").reshape(4, -1)
        for first in range(part * step, min(height, (part + 1) * step), rows):
            _convolve_band(xp[b], wp, w, y[b], band, first, min(height, first + rows), add)

    threads.run(piece, batch * per_image)
    return y


def convolve(x, weights, y):
    """y (B, K, H, W) = the 3x3 convolution (stride 1, pad 1) of x (B, C, H, W) with weights (K, C*9)."""
    return _convolve(_padded(x, "input"), weights.reshape(weights.shape[0], x.shape[1], 3, 3), y, False)


def backward(x, delta, weights, weight_updates, dx):
    """weight_updates (K, C*9) += the filter gradient; dx (None: not needed) += the input gradient, the
    convolution of delta with the filters turned round. The images are summed in `slots` buffers (images s,
    s + slots, ...), added in order at the end, so the sums do not depend on which thread took which image."""
    batch, channels, height, width = x.shape
    filters = weights.shape[0]
    xp, dp = _padded(x, "input"), _padded(delta, "delta")
    n = height * (width + 2)
    slots = min(batch, 2 * threads.threads())
    sums = threads.buffer(slots * filters * channels * 9, "filter sums").reshape(slots, filters, channels, 9)
    sums[:] = 0.0

    def slot(s):
        for b in range(s, batch, slots):
            _add_filter_sums(xp[b], dp[b], width + 2, n, sums[s])

    threads.run(slot, slots)
    total = sums[0]
    for s in range(1, slots):
        total += sums[s]
    weight_updates += total.reshape(weight_updates.shape)
    if dx is not None:
        filters_turned = weights.reshape(filters, channels, 3, 3)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        _convolve(dp, np.ascontiguousarray(filters_turned), dx, True)
