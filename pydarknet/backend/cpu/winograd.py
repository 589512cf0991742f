"""Winograd F(2x2, 3x3): 3x3 stride-1 convolutions with 2.25x fewer multiplications than im2col + GEMM.

CPU-only, and not an op of the backend interface (ops.py): cpu.convolution_forward calls it where `applies` says
it pays, and cpu.convolution_workspace sizes its tiles. The GPU backend convolves by im2col + cuBLAS throughout.
"""
import numba
import numpy as np

from ... import settings
from ...jit import kernel
from . import sgemm, threads
from .activations import bias_activate_row, epilogue_arguments
from .im2col import copy_row
from .pooling import window_max


def transform_weights(weights, channels):
    """U = G g G^T for every 3x3 filter: (K, C*9) -> (16, K, C), ready for one GEMM per tile position (its planes
    PLANE_GAP floats apart, as the tiles')."""
    u = _planes(np.empty(16 * (weights.shape[0] * channels + PLANE_GAP), np.float32), weights.shape[0], channels)
    _transform_filters(weights.reshape(weights.shape[0], channels, 3, 3), u)
    return u


# The input gradient of a 3x3 "same" convolution is the convolution of delta with each filter turned round (180
# degrees), input and output channels swapped. G J = P G, with J the reversal of 3 and P the swap of rows 0 and 3
# of 4, so the turned filters' Winograd form is U's, its tile positions (i, j) read at (TURN[i], TURN[j]) and each
# (K, C) plane transposed: convolve(..., turned=True) reads U so, and no second transform is made.
TURN = (3, 1, 2, 0)
TURNED_PLANES = tuple(TURN[i] * 4 + TURN[j] for i in range(4) for j in range(4))
_ORDER = np.arange(16)                  # the planes sgemm.planes multiplies
_TURNED_ORDER = np.array(TURNED_PLANES)


@kernel(inline="always")
def _g(a, b, c):
    """G (a, b, c): G = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]."""
    return a, .5 * a + .5 * b + .5 * c, .5 * a - .5 * b + .5 * c, c


@kernel(parallel=True)
def _transform_filters(g, u):
    """U = G g G^T in double for each filter (k, c), into u (16, K, C); one pass over the weights, in registers
    (numpy's einsum took 0.1-0.3 s a layer, in every command's first forward and every training step)."""
    filters, channels = g.shape[:2]
    for kc in numba.prange(filters * channels):
        k = kc // channels
        c = kc % channels
        f = g[k, c]
        t0 = _g(np.float64(f[0, 0]), np.float64(f[1, 0]), np.float64(f[2, 0]))     # t = G g, by columns
        t1 = _g(np.float64(f[0, 1]), np.float64(f[1, 1]), np.float64(f[2, 1]))
        t2 = _g(np.float64(f[0, 2]), np.float64(f[1, 2]), np.float64(f[2, 2]))
        for i in range(4):                                                           # u = t G^T, by rows
            r = _g(t0[i], t1[i], t2[i])
            u[i * 4 + 0, k, c] = np.float32(r[0])
            u[i * 4 + 1, k, c] = np.float32(r[1])
            u[i * 4 + 2, k, c] = np.float32(r[2])
            u[i * 4 + 3, k, c] = np.float32(r[3])


@kernel(parallel=True)
def _winograd_input(x, pad, tiles_h, tiles_w, v):
    """V = B^T d B for every 4x4 input tile (stride 2), zero outside the image; v is (16, C, B*T). A row of tiles at
    a time: its 4 input rows (zero-padded) give B^T d for every column at once, then B along the row, tile by tile
    (straight loops that become vector code; B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])."""
    batch, channels, height, width = x.shape
    tiles = tiles_h * tiles_w
    span = 2 * tiles_w + 2          # the padded columns a row of tiles reads
    inside_from, inside_to = max(0, pad), min(span, width + pad)
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        d = np.zeros((4, span), np.float32)
        t = np.empty((4, span), np.float32)
        for th in range(tiles_h):
            for r in range(4):
                yy = 2 * th - pad + r
                row = d[r]
                if 0 <= yy < height:
                    copy_row(row[inside_from:inside_to], x[b, c, yy, inside_from - pad:])
                else:
                    row[:] = 0.0
            d0, d1, d2, d3 = d[0], d[1], d[2], d[3]
            t0, t1, t2, t3 = t[0], t[1], t[2], t[3]
            for xx in range(span):          # t = B^T d
                t0[xx] = d0[xx] - d2[xx]
                t1[xx] = d1[xx] + d2[xx]
                t2[xx] = d2[xx] - d1[xx]
                t3[xx] = d1[xx] - d3[xx]
            first = b * tiles + th * tiles_w
            for i in range(4):              # v = t B
                ti = t[i]
                v0 = v[i * 4 + 0, c, first:first + tiles_w]
                v1 = v[i * 4 + 1, c, first:first + tiles_w]
                v2 = v[i * 4 + 2, c, first:first + tiles_w]
                v3 = v[i * 4 + 3, c, first:first + tiles_w]
                for tw in range(tiles_w):
                    e, f, g, h = ti[2 * tw], ti[2 * tw + 1], ti[2 * tw + 2], ti[2 * tw + 3]
                    v0[tw] = e - g
                    v1[tw] = f + g
                    v2[tw] = g - f
                    v3[tw] = f - h


@kernel(parallel=True)
def _winograd_output(m, tiles_h, tiles_w, y, add, mean, scale, bias, activation, finish, pool):
    """Y = A^T M A for every tile (added to y with `add`): 2x2 outputs each, cropped at odd edges; m is (16, K, B*T).
    With `finish`, each output goes through bias_activate_row with its filter's mean, scale and bias. A row of
    tiles at a time: its two output rows made whole in a scratch pair (loops over the tiles that become vector
    code), then cropped into y. With `pool` (even output sides), y gets the 2x2 stride-2 max pool of the finished
    output instead: a tile's four outputs are one window, met in Darknet's order from -FLT_MAX (a NaN never wins)."""
    batch, filters, out_h, out_w = y.shape
    if pool:
        out_h, out_w = 2 * out_h, 2 * out_w
    tiles = tiles_h * tiles_w
    for bk in numba.prange(batch * filters):
        b = bk // filters
        k = bk % filters
        km, ks, kb = mean[k], scale[k], bias[k]
        pair = np.empty((2, 2 * tiles_w), np.float32)
        top, bottom = pair[0], pair[1]
        for th in range(tiles_h):
            first = b * tiles + th * tiles_w
            m0, m1, m2, m3 = m[0, k, first:], m[1, k, first:], m[2, k, first:], m[3, k, first:]
            m4, m5, m6, m7 = m[4, k, first:], m[5, k, first:], m[6, k, first:], m[7, k, first:]
            m8, m9, m10, m11 = m[8, k, first:], m[9, k, first:], m[10, k, first:], m[11, k, first:]
            m12, m13, m14, m15 = m[12, k, first:], m[13, k, first:], m[14, k, first:], m[15, k, first:]
            for t in range(tiles_w):
                s00 = m0[t] + m4[t] + m8[t]         # s = A^T M, then s A
                s01 = m1[t] + m5[t] + m9[t]
                s02 = m2[t] + m6[t] + m10[t]
                s03 = m3[t] + m7[t] + m11[t]
                s10 = m4[t] - m8[t] - m12[t]
                s11 = m5[t] - m9[t] - m13[t]
                s12 = m6[t] - m10[t] - m14[t]
                s13 = m7[t] - m11[t] - m15[t]
                top[2 * t] = s00 + s01 + s02
                top[2 * t + 1] = s01 - s02 - s03
                bottom[2 * t] = s10 + s11 + s12
                bottom[2 * t + 1] = s11 - s12 - s13
            if finish:
                for i in range(min(2, out_h - 2 * th)):
                    bias_activate_row(pair[i, :out_w], km, ks, kb, activation)
            if pool:
                out = y[b, k, th]
                for t in range(tiles_w):
                    out[t] = window_max(top[2 * t], top[2 * t + 1], bottom[2 * t], bottom[2 * t + 1])
                continue
            for i in range(min(2, out_h - 2 * th)):
                row = pair[i]
                out = y[b, k, 2 * th + i]
                if add:
                    for j in range(out_w):
                        out[j] = out[j] + row[j]
                else:
                    for j in range(out_w):
                        out[j] = row[j]


@kernel(parallel=True)
def _winograd_output_gradient(delta, tiles_h, tiles_w, m):
    """M = A dY A^T for every tile of the output gradient (2x2 each, zero beyond odd edges); m is (16, K, B*T). A row
    of tiles at a time: its two delta rows, zero-padded to whole tiles, then each plane over the whole row."""
    batch, filters, out_h, out_w = delta.shape
    tiles = tiles_h * tiles_w
    for bk in numba.prange(batch * filters):
        b = bk // filters
        k = bk % filters
        d = np.zeros((2, 2 * tiles_w), np.float32)
        t = np.empty((4, 2, tiles_w), np.float32)
        for th in range(tiles_h):
            for r in range(2):
                yy = 2 * th + r
                if yy < out_h:
                    d[r, :out_w] = delta[b, k, yy]
                else:
                    d[r, :] = 0.0
            top, bottom = d[0], d[1]
            # t = A dY: rows d0, d0 + d1, d0 - d1, -d1, for the left and right column of each tile
            for tw in range(tiles_w):
                d00, d01, d10, d11 = top[2 * tw], top[2 * tw + 1], bottom[2 * tw], bottom[2 * tw + 1]
                t[0, 0, tw], t[0, 1, tw] = d00, d01
                t[1, 0, tw], t[1, 1, tw] = d00 + d10, d01 + d11
                t[2, 0, tw], t[2, 1, tw] = d00 - d10, d01 - d11
                t[3, 0, tw], t[3, 1, tw] = -d10, -d11
            first = b * tiles + th * tiles_w
            for i in range(4):          # then t A^T the same way along the columns
                t0, t1 = t[i, 0], t[i, 1]
                m0 = m[i * 4 + 0, k, first:first + tiles_w]
                m1 = m[i * 4 + 1, k, first:first + tiles_w]
                m2 = m[i * 4 + 2, k, first:first + tiles_w]
                m3 = m[i * 4 + 3, k, first:first + tiles_w]
                for tw in range(tiles_w):
                    m0[tw] = t0[tw]
                    m1[tw] = t0[tw] + t1[tw]
                    m2[tw] = t0[tw] - t1[tw]
                    m3[tw] = -t1[tw]


@kernel(parallel=True)
def _add_filter_gradient(p, g):
    """g (K, C, 3, 3) += G^T P G, in double, for the summed tile products p (16, K, C)."""
    filters, channels = g.shape[:2]
    for kc in numba.prange(filters * channels):
        k = kc // channels
        c = kc % channels
        t = np.empty((3, 4))
        for j in range(4):      # t = G^T P
            p0, p1, p2, p3 = (np.float64(p[j, k, c]), np.float64(p[4 + j, k, c]), np.float64(p[8 + j, k, c]),
                              np.float64(p[12 + j, k, c]))
            t[0, j] = p0 + .5 * p1 + .5 * p2
            t[1, j] = .5 * p1 - .5 * p2
            t[2, j] = .5 * p1 + .5 * p2 + p3
        for a in range(3):      # g += t G
            g[k, c, a, 0] += np.float32(t[a, 0] + .5 * t[a, 1] + .5 * t[a, 2])
            g[k, c, a, 1] += np.float32(.5 * t[a, 1] - .5 * t[a, 2])
            g[k, c, a, 2] += np.float32(.5 * t[a, 1] + .5 * t[a, 2] + t[a, 3])


# Floats between the starts of two of the 16 tile planes beyond their size: planes a multiple of 4 KiB apart put
# the 16 write streams of the transforms into the same cache sets (2-3x slower at 52x52 and larger).
PLANE_GAP = 16


def workspace_size(channels, filters, columns):
    """Floats convolve needs for `columns` tiles: the 16 planes of input and of product tiles, with their gaps."""
    return 16 * (channels * columns + PLANE_GAP) + 16 * (filters * columns + PLANE_GAP)


def _planes(space, rows, columns):
    """A (16, rows, columns) view of space whose planes lie PLANE_GAP floats apart."""
    stride = rows * columns + PLANE_GAP
    return space[:16 * stride].reshape(16, stride)[:, :rows * columns].reshape(16, rows, columns)


def _tile_planes(x, filters, out_shape, workspace):
    """(tiles_h, tiles_w, v, m) for x (B, C, H, W) and an output of `filters` channels, out_shape (H', W'): the
    input tiles' planes v (16, C, B*T) and the output tiles' m (16, filters, B*T), in workspace when it fits."""
    batch, channels = x.shape[:2]
    tiles_h, tiles_w = (out_shape[0] + 1) // 2, (out_shape[1] + 1) // 2
    cols = batch * tiles_h * tiles_w
    need = workspace_size(channels, filters, cols)
    space = np.empty(need, np.float32) if workspace is None or workspace.size < need else workspace
    v = _planes(space, channels, cols)
    m = _planes(space[16 * (channels * cols + PLANE_GAP):], filters, cols)
    return tiles_h, tiles_w, v, m


def convolve(x, u, pad, y, workspace=None, add=False, turned=False, epilogue=None, pool=False):
    """y = 3x3 stride-1 convolution of x (B, C, H, W) with Winograd filters u (16, K, C), into y (B, K, H', W')
    (with `add`: y += it). `turned`: with the filters of u turned round instead (see TURN), u being the forward's
    U (16, C', C) of a convolution from C channels to the C' channels x has, and y having C. `epilogue`: (mean,
    scale, bias, activation) per filter, applied as the output transform writes y (direct.forward's). `pool`
    (with an epilogue, H' and W' even): y (B, K, H'/2, W'/2) gets the 2x2 stride-2 max pool of that instead."""
    out_shape = (2 * y.shape[2], 2 * y.shape[3]) if pool else y.shape[2:]
    tiles_h, tiles_w, v, m = _tile_planes(x, u.shape[2] if turned else u.shape[1], out_shape, workspace)
    _winograd_input(x, pad, tiles_h, tiles_w, v)
    blas = sgemm.library()
    if blas is not None:        # the 16 tile positions' GEMMs, on Numba's threads
        sgemm.planes(*blas, u, v, m, _TURNED_ORDER if turned else _ORDER, turned)
    elif turned:
        threads.run(lambda i: np.matmul(u[TURNED_PLANES[i]].T, v[i], out=m[i]), 16)
    else:
        threads.run(lambda i: np.matmul(u[i], v[i], out=m[i]), 16)     # the 16 tile positions' GEMMs, shared out
    _winograd_output(m, tiles_h, tiles_w, y, add, *epilogue_arguments(epilogue, y[0, 0, 0]), pool)
    return y


def filter_gradient(x, delta, pad, weight_updates, workspace=None, products=None):
    """weight_updates (K, C*9) += the filter gradient of the 3x3 stride-1 convolution of x (B, C, H, W) whose output
    gradient is delta (B, K, H', W'): G^T [sum over tiles of (A dY A^T) (B^T d B)^T] G, one GEMM (K x tiles x C) per
    tile position; `products` (16*K*C floats) holds their sums."""
    channels, filters = x.shape[1], delta.shape[1]
    tiles_h, tiles_w, v, m = _tile_planes(x, filters, delta.shape[2:], workspace)
    p = (np.empty(16 * filters * channels, np.float32) if products is None else products).reshape(16, filters,
                                                                                               channels)
    _winograd_input(x, pad, tiles_h, tiles_w, v)
    _winograd_output_gradient(delta, tiles_h, tiles_w, m)
    threads.run(lambda i: np.matmul(m[i], v[i].T, out=p[i]), 16)
    _add_filter_gradient(p, weight_updates.reshape(filters, channels, 3, 3))


def applies(channels, height, width, size, stride, groups):
    """Winograd F(2x2,3x3) pays once there are enough channels for its transforms to be amortised."""
    return (size == 3 and stride == 1 and groups == 1 and channels >= settings.winograd_min_channels() and height > 1
            and width > 1)
