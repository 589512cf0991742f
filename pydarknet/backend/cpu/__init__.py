"""CPU kernels: Numba loops for the structural work, numpy's BLAS for GEMM.

The public names here are exactly the ops that ops.py declares; each has a twin of the same name and signature in
cuda.py's CudaOps (the GPU backend), and everything else is private. Arrays are NCHW float32, Darknet's memory
order. 3x3 convolutions with many channels go through winograd.py. Arithmetic follows Darknet's C: where C
promotes a float to double (exp, sqrt, `.1*x`), so do we, and round back to float32 where C stores the result.
"""
import math

import numba
import numpy as np

from ...activations import ELU, HARDTAN, LEAKY, LHTAN, LINEAR, LOGGY, LOGISTIC, PLSE, RAMP, RELIE, RELU, STAIR, TANH
from ...jit import kernel, piece_kernel
from . import direct, threads, winograd

xp = np         # the array module these ops work on

_FLT_MIN = np.float32(1.17549435e-38)     # below this a float32 is denormal: we flush it, as Darknet's -Ofast does



@kernel(inline="always")
def _activate(x, a):
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
def _flush(y):
    return np.float32(0.0) if -_FLT_MIN < y < _FLT_MIN else y


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
                row[i] = np.float32(0.0) if abs(v) < _FLT_MIN else v   # NaN stays NaN
        elif a == LINEAR:
            for i in range(size):
                v = (row[i] - m) * k + bias
                row[i] = np.float32(0.0) if abs(v) < _FLT_MIN else v   # NaN stays NaN
        else:
            for i in range(size):
                row[i] = _flush(_activate((row[i] - m) * k + bias, a))


def bias_activate(y, biases, activation, scales=None, mean=None, variance=None):
    """In place on y (B, C, ...): optional batch-norm with given statistics, + bias, activation, denormals to 0."""
    shaped = y.reshape(y.shape[0], y.shape[1], -1)
    normalize = scales is not None
    if not normalize:
        scales = mean = variance = biases
    _bias_activate(shaped, mean, variance, scales, biases, normalize, activation)
    return y


@kernel(parallel=True)
def _activate_array(x, a):
    n = x.size
    if a == LEAKY:          # the common cases get branch-free loops that vectorise
        for i in numba.prange(n):
            v = x[i]
            v = v if v > 0 else np.float32(0.1) * v
            x[i] = np.float32(0.0) if abs(v) < _FLT_MIN else v   # NaN stays NaN
    elif a == LINEAR:
        for i in numba.prange(n):
            v = x[i]
            x[i] = np.float32(0.0) if abs(v) < _FLT_MIN else v   # NaN stays NaN
    else:
        for i in numba.prange(n):
            x[i] = _flush(_activate(x[i], a))


def activate(x, activation):
    """In place: Darknet's activate_array over x (a strided view is worked on a copy and written back)."""
    if x.flags.c_contiguous:
        _activate_array(x.reshape(-1), activation)
    else:
        flat = np.ascontiguousarray(x).reshape(-1)
        _activate_array(flat, activation)
        x[...] = flat.reshape(x.shape)
    return x


@kernel(parallel=True)
def _batch_stats(x, mean, variance):
    """Darknet's mean_cpu and variance_cpu over (B, C, N), in their order: one float32 sum per channel, element after
    element (the -Ofast build keeps it scalar), the variance's squares taken and added in double and the sum rounded
    to float32 at each step; variance divides by B*N - 1.

    That order matters: over the 2.8M values per channel of a batch of 16 at 416 x 416 these sums are off by up to
    0.3%, and the batch-norm backward pass turns differences of that size into 5-10% in the deltas (issue 23).
    Four channels run side by side in each thread: four independent chains of additions, 4x the speed of one."""
    batch, channels, size = x.shape
    scale_mean = np.float32(1.0 / (batch * size))
    scale_variance = np.float32(1.0 / (batch * size - 1))
    for group in numba.prange((channels + 3) // 4):
        c0 = 4 * group      # a last group of fewer channels repeats its last one (same sums, same result)
        c1, c2, c3 = min(c0 + 1, channels - 1), min(c0 + 2, channels - 1), min(c0 + 3, channels - 1)
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for b in range(batch):
            for i in range(size):
                s0 += x[b, c0, i]
                s1 += x[b, c1, i]
                s2 += x[b, c2, i]
                s3 += x[b, c3, i]
        m0, m1, m2, m3 = s0 * scale_mean, s1 * scale_mean, s2 * scale_mean, s3 * scale_mean
        v0 = v1 = v2 = v3 = np.float32(0.0)
        for b in range(batch):
            for i in range(size):
                v0 = _add_square(v0, x[b, c0, i] - m0)
                v1 = _add_square(v1, x[b, c1, i] - m1)
                v2 = _add_square(v2, x[b, c2, i] - m2)
                v3 = _add_square(v3, x[b, c3, i] - m3)
        for c, m, v in ((c3, m3, v3), (c2, m2, v2), (c1, m1, v1), (c0, m0, v0)):
            mean[c] = m
            variance[c] = v * scale_variance


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
                v = _activate(v, a)
            y[b, c, i] = np.float32(0.0) if abs(v) < _FLT_MIN else v   # NaN stays NaN


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


def batch_stats(x):
    """Per-channel mean and (unbiased) variance of x (B, C, ...), as Darknet's train-mode batch-norm takes them."""
    shaped = x.reshape(x.shape[0], x.shape[1], -1)
    mean = np.empty(x.shape[1], np.float32)
    variance = np.empty(x.shape[1], np.float32)
    _batch_stats(shaped, mean, variance)
    return mean, variance


@kernel(inline="always")
def _im2col_row(x, size, stride, pad, out_w, row, first, last, col):
    """Darknet's im2col_cpu for one column-matrix row (channel, kernel y, kernel x), output rows first..last-1."""
    channels, height, width = x.shape
    n = (last - first) * out_w
    w_offset = row % size
    h_offset = (row // size) % size
    c = row // size // size
    for i in range(first, last):
        y = h_offset + i * stride - pad
        base = row * n + (i - first) * out_w
        if y < 0 or y >= height:
            for j in range(out_w):
                col[base + j] = 0.0
            continue
        for j in range(out_w):
            xx = w_offset + j * stride - pad
            col[base + j] = x[c, y, xx] if 0 <= xx < width else np.float32(0.0)


@kernel(parallel=True)
def _im2col(x, size, stride, pad, out_h, out_w, col):
    for row in numba.prange(x.shape[0] * size * size):
        _im2col_row(x, size, stride, pad, out_w, row, 0, out_h, col)


@piece_kernel
def _im2col_rows(x, size, stride, pad, out_w, first, last, col):
    """_im2col for the output rows first..last-1 only, on one thread: col is (C*size*size, (last-first)*out_w)."""
    for row in range(x.shape[0] * size * size):
        _im2col_row(x, size, stride, pad, out_w, row, first, last, col)


def im2col(x, size, stride, pad, out_h, out_w, workspace=None):
    """Darknet's im2col_cpu for one image x (C, H, W) -> (C*size*size, out_h*out_w)."""
    rows = x.shape[0] * size * size
    n = rows * out_h * out_w
    col = np.empty(n, np.float32) if workspace is None else workspace[:n]
    _im2col(x, size, stride, pad, out_h, out_w, col)
    return col.reshape(rows, out_h * out_w)


_PIECE_FLOPS = 4e6      # below this a GEMM is not worth sharing out


def gemm(a, b, out=None):
    """out = a @ b in float32: single-threaded BLAS calls on pieces that threads.run shares out. The pieces cut the
    longer of out's two sides, so that the operand every piece reads whole is the smaller one (each BLAS call packs
    it again)."""
    m, n = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((m, n), np.float32)
    pieces = min(2 * threads.threads(), int(2.0 * m * n * a.shape[1] / _PIECE_FLOPS))
    if pieces < 2 or threads.inside():     # inside a piece the thread is already one of the parallel ones
        threads.limit_blas()
        return np.matmul(a, b, out=out)
    if n >= m:
        step = -(-(-(-n // pieces)) // 16) * 16     # n/pieces rounded up to 16 columns: whole cache lines
        threads.run(lambda i: np.matmul(a, b[:, i * step:(i + 1) * step], out=out[:, i * step:(i + 1) * step]),
                    -(-n // step))
    else:
        step = -(-m // pieces)
        threads.run(lambda i: np.matmul(a[i * step:(i + 1) * step], b, out=out[i * step:(i + 1) * step]),
                    -(-m // step))
    return out


@kernel(parallel=True)
def _maxpool(x, size, stride, pad, y, argmax):
    """Darknet's maxpool with the flat input index of each maximum; 2x2 stride-2 windows inside the image take a
    loop without bounds tests (the same comparisons in the same order)."""
    batch, channels, height, width = x.shape
    _, _, out_h, out_w = y.shape
    offset = -(pad // 2)
    lowest = np.float32(-3.4028234663852886e38)     # -FLT_MAX, as Darknet's CPU pads
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        base = (b * channels + c) * height * width
        plane = x[b, c]
        for i in range(out_h):
            j = 0
            y0 = offset + i * stride
            if size == 2 and stride == 2 and offset == 0 and y0 + 2 <= height:
                top = plane[y0]
                bottom = plane[y0 + 1]
                row = base + y0 * width
                for j in range(min(out_w, width // 2)):
                    best = lowest
                    best_i = -1
                    if top[2 * j] > best:
                        best, best_i = top[2 * j], row + 2 * j
                    if top[2 * j + 1] > best:
                        best, best_i = top[2 * j + 1], row + 2 * j + 1
                    if bottom[2 * j] > best:
                        best, best_i = bottom[2 * j], row + width + 2 * j
                    if bottom[2 * j + 1] > best:
                        best, best_i = bottom[2 * j + 1], row + width + 2 * j + 1
                    y[b, c, i, j] = best
                    argmax[b, c, i, j] = best_i
                j = min(out_w, width // 2)
            for j in range(j, out_w):
                best = lowest
                best_i = -1
                for n in range(size):
                    yy = y0 + n
                    for m in range(size):
                        xx = offset + j * stride + m
                        v = plane[yy, xx] if 0 <= yy < height and 0 <= xx < width else lowest
                        if v > best:
                            best = v
                            best_i = base + yy * width + xx
                y[b, c, i, j] = best
                argmax[b, c, i, j] = best_i


@kernel(parallel=True)
def _maxpool_values(x, size, stride, pad, y):
    """_maxpool without the argmax, for inference: windows inside the image skip the bounds tests, and 2x2 stride 2
    windows (most YOLO pools) get a loop that vectorises. Same comparisons in the same order, so NaN and -FLT_MAX
    padding come out as in _maxpool."""
    batch, channels, height, width = x.shape
    _, _, out_h, out_w = y.shape
    offset = -(pad // 2)
    lowest = np.float32(-3.4028234663852886e38)
    for bc in numba.prange(batch * channels):
        plane = x[bc // channels, bc % channels]
        out = y[bc // channels, bc % channels]
        for i in range(out_h):
            y0 = offset + i * stride
            rows_inside = y0 >= 0 and y0 + size <= height
            j = 0
            if rows_inside and size == 2 and stride == 2 and offset == 0:
                top = plane[y0]
                bottom = plane[y0 + 1]
                inside = min(out_w, width // 2)
                for j in range(inside):
                    best = lowest
                    v = top[2 * j]
                    best = v if v > best else best
                    v = top[2 * j + 1]
                    best = v if v > best else best
                    v = bottom[2 * j]
                    best = v if v > best else best
                    v = bottom[2 * j + 1]
                    best = v if v > best else best
                    out[i, j] = best
                j = inside
            for j in range(j, out_w):
                x0 = offset + j * stride
                best = lowest
                if rows_inside and x0 >= 0 and x0 + size <= width:
                    for n in range(size):
                        for m in range(size):
                            v = plane[y0 + n, x0 + m]
                            best = v if v > best else best
                else:
                    for n in range(size):
                        yy = y0 + n
                        for m in range(size):
                            xx = x0 + m
                            v = plane[yy, xx] if 0 <= yy < height and 0 <= xx < width else lowest
                            best = v if v > best else best
                out[i, j] = best


def maxpool_forward(x, size, stride, pad, y, with_argmax=True, argmax=None):
    """Darknet's forward_maxpool_layer into y; returns (y, the flat input index of each maximum), the index only
    when with_argmax (backward needs it; inference does not, and skipping it makes the pass five times quicker),
    written into `argmax` (the previous call's) when its shape fits."""
    if not with_argmax:
        _maxpool_values(x, size, stride, pad, y)
        return y, None
    if argmax is None or argmax.shape != y.shape:
        argmax = np.empty(y.shape, np.int64)
    _maxpool(x, size, stride, pad, y, argmax)
    return y, argmax


@kernel(parallel=True)
def _avgpool(x, y):
    batch, channels, size = x.shape
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        s = np.float32(0.0)
        for i in range(size):
            s += x[b, c, i]
        y[b, c] = s / np.float32(size)


def avgpool_forward(x, y):
    """Darknet's forward_avgpool_layer: per-channel mean, summed in order in float32. y is (B, C)."""
    _avgpool(x.reshape(x.shape[0], x.shape[1], -1), y.reshape(y.shape[0], -1))
    return y


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
        out[i] = _flush(v if a == LINEAR else _activate(v, a))


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


@kernel(parallel=True)
def _local(col, weights, biases, n, out):
    """One image of Darknet's forward_local_layer: a separate (n x k) filter bank at every output location."""
    k, locations = col.shape
    for loc in numba.prange(locations):
        base = loc * k * n
        for f in range(n):
            s = np.float32(0.0)
            for q in range(k):
                s += weights[base + f * k + q] * col[q, loc]
            out[f * locations + loc] = biases[f * locations + loc] + s


def local_forward(col, weights, biases, n, out):
    _local(col, weights, biases, n, out)
    return out


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


# ---- convolution: im2col + GEMM image by image, Winograd where it pays -----------------------------------------

def convolution_workspace(channels, height, width, filters, size, stride, pad, groups, batch=1, training=False):
    """Floats of workspace convolution_forward (and in training _backward) needs: one image's columns, or
    Winograd's tiles (16 values per 2x2 tile)."""
    out_h = (height + 2 * pad - size) // stride + 1
    out_w = (width + 2 * pad - size) // stride + 1
    columns = channels // groups * size * size * out_h * out_w
    tiles = batch * ((out_h + 1) // 2) * ((out_w + 1) // 2)
    if winograd.applies(channels, height, width, size, stride, groups):
        columns = max(columns, winograd.workspace_size(channels, filters, tiles))
    if training and _winograd_gradient(filters, out_h, out_w, size, stride, pad, groups):
        columns = max(columns, winograd.workspace_size(filters, channels, tiles))
    return columns


def _winograd_gradient(filters, out_h, out_w, size, stride, pad, groups):
    """Whether the input gradient goes through Winograd: that of a 3x3 stride-1 convolution padded by 1 is itself
    one (of delta, with the filters turned round), worth it where delta has enough channels."""
    return pad == 1 and winograd.applies(filters, out_h, out_w, size, stride, groups)


def convolution_forward(x, weights, size, stride, pad, groups, y, workspace=None, derived=None):
    """y = the convolution of x (B, C, H, W) with weights (K, C/groups*size*size): Darknet's loop of im2col and
    GEMM per image and group, or Winograd, or for few input channels direct 3x3 loops (direct.py). `derived` (a
    dict the caller empties when the weights change) keeps the Winograd filters between calls. Without it the
    weights are used once, and Winograd, whose filter transform pays over many calls, is not taken."""
    batch, c, height, width = x.shape
    filters = weights.shape[0]
    _, _, out_h, out_w = y.shape
    if derived is not None and winograd.applies(c, height, width, size, stride, groups):
        if "winograd" not in derived:
            derived["winograd"] = winograd.transform_weights(weights, c)
        return winograd.convolve(x, derived["winograd"], pad, y, workspace)
    if direct.applies(c, size, stride, pad, groups):
        return direct.convolve(x, weights, y)
    cg, ng = c // groups, filters // groups
    one_by_one = size == 1 and stride == 1 and pad == 0
    rows = cg * size * size
    in_pieces = not one_by_one and rows * out_h * out_w >= _LARGE_COLUMNS

    def image(i):
        """Image i // groups, group i % groups: its columns and one GEMM, on one thread."""
        b, g = divmod(i, groups)
        xg = x[b, g * cg:(g + 1) * cg]
        wg, yg = weights[g * ng:(g + 1) * ng], y[b, g * ng:(g + 1) * ng].reshape(ng, -1)
        if in_pieces:
            _convolve_in_pieces(xg, wg, size, stride, pad, out_h, out_w, yg)
            return
        if one_by_one:
            col = xg.reshape(cg, -1)
        else:
            col = threads.buffer(rows * out_h * out_w).reshape(rows, -1)
            _im2col_rows(xg, size, stride, pad, out_w, 0, out_h, col.reshape(-1))
        np.matmul(wg, col, out=yg)

    if batch * groups == 1:     # one GEMM, cut into pieces
        xg = x[0]
        if in_pieces:
            _convolve_in_pieces(xg, weights, size, stride, pad, out_h, out_w, y[0].reshape(filters, -1))
        else:
            col = xg.reshape(c, -1) if one_by_one else im2col(xg, size, stride, pad, out_h, out_w, workspace)
            gemm(weights, col, out=y[0].reshape(filters, -1))
    else:                       # the images (and groups) are the pieces
        threads.run(image, batch * groups)
    return y


# Column matrices of this many floats and more (the early layers' 3x3 convolutions of large images: 25-50 MB) are
# not written out whole: each piece of output rows makes its own columns, about _PIECE_COLUMNS floats that stay in
# the core's cache, and multiplies them at once.
_LARGE_COLUMNS = 2 << 20
_PIECE_COLUMNS = 128 << 10
_PIECE_MIN_WIDTH = 1024     # columns at least: packing the filters again for each piece's BLAS call then costs little


def _rows_per_piece(rows, out_h, out_w, one_by_one):
    """Output rows whose columns are made at a time: all of them, or for large column matrices a cache's worth."""
    if one_by_one or rows * out_h * out_w < _LARGE_COLUMNS:
        return out_h
    return max(-(-_PIECE_MIN_WIDTH // out_w), _PIECE_COLUMNS // (rows * out_w), 1)


def _convolve_in_pieces(x, weights, size, stride, pad, out_h, out_w, y):
    """y (K, out_h*out_w) = weights @ im2col(x), made piece by piece over output rows (threads.run shares them
    out)."""
    rows = weights.shape[1]
    per_piece = _rows_per_piece(rows, out_h, out_w, False)

    def piece(i):
        first, last = i * per_piece, min(out_h, (i + 1) * per_piece)
        col = threads.buffer(rows * (last - first) * out_w)
        _im2col_rows(x, size, stride, pad, out_w, first, last, col)
        np.matmul(weights, col.reshape(rows, -1), out=y[:, first * out_w:last * out_w])

    threads.run(piece, -(-out_h // per_piece))


def convolution_backward(x, delta, weights, size, stride, pad, groups, weight_updates, dx, workspace=None,
                         derived=None):
    """Darknet's backward_convolutional_layer after the bias/batch-norm part: weight_updates += delta x col^T,
    and the input gradient W^T delta through col2im into dx (None: not needed), or, for 3x3 "same" convolutions
    with enough filters, dx += the Winograd convolution of delta with the turned filters (read from the forward's
    Winograd filters in `derived`). Where the forward pass takes Winograd, so does the weight gradient
    (winograd.filter_gradient); where it convolves directly (few input channels), both gradients do (direct.py).

    The images are the pieces (one image: its GEMMs are). Each of `slots` buffers sums the weight gradient of the
    images slot, slot + slots, ... transposed, (C*size*size, K): the GEMM runs as col delta^T, whose BLAS call on
    one thread reaches 1.5-3x the rate of splitting the long inner dimension, and the slots are added in order at
    the end, so the sums do not depend on which thread took which piece.

    Kept from Darknet: a 1x1 convolution writes its input gradient over dx instead of adding to it (its GEMM has
    beta 0), so what a shortcut or route put into that delta before is lost, as in the original.
    """
    batch = x.shape[0]
    _, _, out_h, out_w = delta.shape
    filters, rows = weights.shape
    cg, ng = x.shape[1] // groups, filters // groups
    one_by_one = size == 1 and stride == 1 and pad == 0
    winograd_weights = winograd.applies(x.shape[1], x.shape[2], x.shape[3], size, stride, groups)
    if not winograd_weights and direct.applies(x.shape[1], size, stride, pad, groups):
        direct.backward(x, delta, weights, weight_updates, dx)
        return
    if dx is not None and _winograd_gradient(filters, out_h, out_w, size, stride, pad, groups):
        derived = {} if derived is None else derived
        if "winograd" not in derived:       # the forward's, where it took Winograd
            derived["winograd"] = winograd.transform_weights(weights, x.shape[1])
        winograd.convolve(delta, derived["winograd"], pad, dx, workspace, add=True, turned=True)
        dx = None
    if winograd_weights:
        winograd.filter_gradient(x, delta, pad, weight_updates, workspace,
                                 threads.buffer(16 * filters * x.shape[1], "filter products"))
        if dx is None:
            return
        weight_updates = None           # the images below give dx only
    slots = min(batch, 2 * threads.threads())
    sums = None if weight_updates is None else threads.buffer(slots * groups * rows * ng, "slots").reshape(
        slots, groups, rows, ng)
    per_piece = _rows_per_piece(rows, out_h, out_w, one_by_one)

    def slot(s):
        for b in range(s, batch, slots):
            for g in range(groups):
                _backward_image(x[b, g * cg:(g + 1) * cg], delta[b, g * ng:(g + 1) * ng].reshape(ng, -1),
                                weights[g * ng:(g + 1) * ng], size, stride, pad, out_w, per_piece,
                                None if sums is None else sums[s, g], b == s,
                                None if dx is None else dx[b, g * cg:(g + 1) * cg], one_by_one)

    threads.run(slot, slots)
    if sums is None:
        return
    total = sums[0]
    for s in range(1, slots):
        total += sums[s]
    for g in range(groups):
        weight_updates[g * ng:(g + 1) * ng] += total[g].T


def _backward_image(x, d, w, size, stride, pad, out_w, per_piece, total, fresh, dx, one_by_one):
    """One image (and group) x (C, H, W) with its delta d (K, out_h*out_w): total (C*size*size, K) += col d^T (set
    when `fresh`; None: not wanted), and dx += W^T d folded back by col2im (1x1: dx = W^T d); per_piece output rows
    at a time."""
    rows = w.shape[1]
    if one_by_one:
        if total is not None:
            _add_product(x.reshape(rows, -1), d.T, total, fresh)
        if dx is not None:
            gemm(w.T, d, out=dx.reshape(rows, -1))
        return
    out_h = d.shape[1] // out_w
    for first in range(0, out_h, per_piece):
        last = min(out_h, first + per_piece)
        n = (last - first) * out_w
        dp = d[:, first * out_w:last * out_w]
        if total is not None:
            col = threads.buffer(rows * n).reshape(rows, n)
            _im2col_rows(x, size, stride, pad, out_w, first, last, col.reshape(-1))
            _add_product(col, dp.T, total, fresh and first == 0)
        if dx is not None:
            gradient_columns = gemm(w.T, dp, out=threads.buffer(rows * n, "gradient").reshape(rows, n))
            _col2im_rows(gradient_columns.reshape(-1), size, stride, pad, out_w, first, last, dx)


def _add_product(a, b, total, fresh):
    """total += a @ b, or total = a @ b when fresh (no product buffer to add)."""
    if fresh:
        gemm(a, b, out=total)
    else:
        total += gemm(a, b, out=threads.buffer(total.size, "product").reshape(total.shape))


# ---- backward ------------------------------------------------------------------------------------------------

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


@kernel(inline="always")
def _col2im_row(col, size, stride, pad, out_w, row, first, last, x):
    """Darknet's col2im_cpu for one column-matrix row, output rows first..last-1 (laid out as _im2col_row's)."""
    channels, height, width = x.shape
    n = (last - first) * out_w
    w_offset = row % size
    h_offset = (row // size) % size
    c = row // size // size
    for i in range(first, last):
        yy = h_offset + i * stride - pad
        if yy < 0 or yy >= height:
            continue
        base = row * n + (i - first) * out_w
        for j in range(out_w):
            xx = w_offset + j * stride - pad
            if 0 <= xx < width:
                x[c, yy, xx] += col[base + j]


@kernel(parallel=True)
def _col2im(col, size, stride, pad, out_h, out_w, x):
    """Add each column value back onto the pixel it came from; one channel per thread."""
    for c in numba.prange(x.shape[0]):
        for row in range(c * size * size, (c + 1) * size * size):
            _col2im_row(col, size, stride, pad, out_w, row, 0, out_h, x)


@piece_kernel
def _col2im_rows(col, size, stride, pad, out_w, first, last, x):
    """_col2im for the output rows first..last-1 only, on one thread."""
    for row in range(x.shape[0] * size * size):
        _col2im_row(col, size, stride, pad, out_w, row, first, last, x)


def col2im(col, size, stride, pad, x):
    """Add the column matrix (C*size*size, out_h*out_w) back into the image gradient x (C, H, W)."""
    channels, height, width = x.shape
    out_h = (height + 2 * pad - size) // stride + 1
    out_w = (width + 2 * pad - size) // stride + 1
    _col2im(col.reshape(-1), size, stride, pad, out_h, out_w, x)
    return x


@kernel(parallel=True)
def _maxpool_backward(delta, argmax, dx):
    batch, channels = delta.shape[:2]
    for bc in numba.prange(batch * channels):     # a plane's maxima all lie in the same input plane
        b = bc // channels
        c = bc % channels
        for i in range(delta.shape[2]):
            for j in range(delta.shape[3]):
                k = argmax[b, c, i, j]
                if k >= 0:
                    dx[k] += delta[b, c, i, j]


def maxpool_backward(delta, argmax, size, stride, pad, dx):
    """Darknet's backward_maxpool_layer: each output's delta goes to the input that was its maximum (the window's
    geometry is for the GPU's gather; argmax alone says it here)."""
    _maxpool_backward(delta, argmax, dx.reshape(-1))
    return dx


@kernel(parallel=True)
def _local_backward(col, weights, delta, n, weight_updates, col_delta):
    """One image of Darknet's backward_local_layer: weight updates and the column gradient, per location."""
    k, locations = col.shape
    for loc in numba.prange(locations):
        base = loc * k * n
        for f in range(n):
            d = delta[f * locations + loc]
            for q in range(k):
                weight_updates[base + f * k + q] += d * col[q, loc]
        for q in range(k):
            s = np.float32(0.0)
            for f in range(n):
                s += weights[base + f * k + q] * delta[f * locations + loc]
            col_delta[q, loc] = s


def local_backward(col, weights, delta, n, weight_updates, col_delta):
    _local_backward(col, weights, delta, n, weight_updates, col_delta)
    return col_delta


def shortcut_backward(delta, alpha, beta, dx, source_delta):
    """Darknet's backward_shortcut_layer after the activation gradient: dx += alpha*delta, and delta (sampled as
    in shortcut_cpu) times beta into the source layer's delta."""
    dx += np.float32(alpha) * delta
    _shortcut(delta, np.float32(1.0), np.float32(beta), source_delta)
    return dx


def upsample_backward(delta, stride, scale, reverse, dx):
    """Darknet's backward_upsample_layer: the scaled sum of each block into dx; with reverse, dx is overwritten
    by the scaled nearest-neighbour enlargement of delta."""
    if reverse:
        _upsample(delta, stride, np.float32(scale), dx)
    else:
        _downsample(delta, stride, np.float32(scale), dx, True)
    return dx


def reorg_backward(delta, stride, reverse, dx):
    """Darknet's backward_reorg_layer: reorg_cpu with the direction flipped, written over dx."""
    batch, c, h, w = dx.shape
    _reorg_flat(delta.reshape(-1), w, h, c, batch, stride, not reverse, dx.reshape(-1))
    return dx


@kernel(parallel=True)
def _batchnorm_backward(delta, x, x_norm, mean, variance, scales, bias_updates, scale_updates, normalize):
    """backward_bias, backward_scale_cpu, scale_bias, mean_delta_cpu, variance_delta_cpu and normalize_delta_cpu
    for one channel per thread, with Darknet's float32 accumulators and its double-precision factors."""
    batch, channels, size = delta.shape
    n = batch * size
    for c in numba.prange(channels):
        if not normalize:
            total = np.float32(0.0)
            for b in range(batch):
                s = np.float32(0.0)
                for i in range(size):
                    s += delta[b, c, i]
                total += s
            bias_updates[c] += total
            continue
        # one pass for the four sums, each still added up in Darknet's order
        scale = scales[c]
        m = mean[c]
        total = np.float32(0.0)
        s = np.float32(0.0)
        mean_delta = np.float32(0.0)
        variance_delta = np.float32(0.0)
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
        v = np.float64(variance[c] + np.float32(.00001))
        mean_delta = np.float32(mean_delta * (-1.0 / math.sqrt(v)))
        variance_delta = np.float32(variance_delta * (-.5 * np.float64(np.float32(v) ** np.float32(-1.5))))
        inv = 1.0 / math.sqrt(v)
        spread = variance_delta * 2.0 / n       # normalize_delta_cpu's factors, divided once per channel
        shift = np.float64(mean_delta / np.float32(n))
        for b in range(batch):
            for i in range(size):
                delta[b, c, i] = np.float32(delta[b, c, i] * inv + spread * np.float64(x[b, c, i] - m) + shift)


def batchnorm_backward(delta, x, x_norm, mean, variance, scales, bias_updates, scale_updates):
    """In place on delta (B, C, ...): Darknet's backward_batchnorm_layer (or backward_bias alone when x is None)."""
    shaped = delta.reshape(delta.shape[0], delta.shape[1], -1)
    normalize = x is not None
    if not normalize:
        x = x_norm = shaped
        mean = variance = scales = scale_updates = bias_updates
    else:
        x = x.reshape(shaped.shape)
        x_norm = x_norm.reshape(shaped.shape)
    _batchnorm_backward(shaped, x, x_norm, mean, variance, scales, bias_updates, scale_updates, normalize)
    return delta


@kernel(parallel=True)
def _flush_array(x):
    for i in numba.prange(x.size):
        if -_FLT_MIN < x[i] < _FLT_MIN:
            x[i] = 0.0


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


def flush(x):
    """In place: denormal values to zero (gradients that shrink layer by layer would otherwise slow every GEMM
    ten-fold; Darknet's -Ofast build flushes them in hardware)."""
    _flush_array(x.reshape(-1))
    return x
