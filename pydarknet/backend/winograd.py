"""Winograd F(2x2, 3x3): 3x3 stride-1 convolutions with 2.25x fewer multiplications than im2col + GEMM.

CPU-only, and not an op of the backend interface (ops.py): cpu.convolution_forward calls it where `applies` says
it pays, and cpu.convolution_workspace sizes its tiles. The GPU backend convolves by im2col + cuBLAS throughout.
"""
import numba
import numpy as np

from .. import settings
from ..jit import kernel
from . import threads


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


@kernel(inline="always")
def _bt(a, b, c, d):
    """B^T (a, b, c, d): B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]."""
    return a - c, b + c, c - b, b - d


@kernel(inline="always")
def _pixel(x, b, c, yy, xx):
    """x[b, c, yy, xx], zero outside the image."""
    if 0 <= yy < x.shape[2] and 0 <= xx < x.shape[3]:
        return x[b, c, yy, xx]
    return np.float32(0.0)


@kernel(parallel=True)
def _winograd_input(x, pad, tiles_h, tiles_w, v):
    """V = B^T d B for every 4x4 input tile (stride 2), zero outside the image; v is (16, C, B*T)."""
    batch, channels, height, width = x.shape
    tiles = tiles_h * tiles_w
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        for th in range(tiles_h):
            y0 = 2 * th - pad
            rows_inside = y0 >= 0 and y0 + 4 <= height
            for tw in range(tiles_w):
                x0 = 2 * tw - pad
                if rows_inside and x0 >= 0 and x0 + 4 <= width:      # most tiles: no bounds to test
                    p = x[b, c, y0:y0 + 4, x0:x0 + 4]
                    c0 = _bt(p[0, 0], p[1, 0], p[2, 0], p[3, 0])             # t = B^T d, by columns
                    c1 = _bt(p[0, 1], p[1, 1], p[2, 1], p[3, 1])
                    c2 = _bt(p[0, 2], p[1, 2], p[2, 2], p[3, 2])
                    c3 = _bt(p[0, 3], p[1, 3], p[2, 3], p[3, 3])
                else:
                    c0 = _bt(_pixel(x, b, c, y0, x0), _pixel(x, b, c, y0 + 1, x0), _pixel(x, b, c, y0 + 2, x0),
                             _pixel(x, b, c, y0 + 3, x0))
                    c1 = _bt(_pixel(x, b, c, y0, x0 + 1), _pixel(x, b, c, y0 + 1, x0 + 1),
                             _pixel(x, b, c, y0 + 2, x0 + 1), _pixel(x, b, c, y0 + 3, x0 + 1))
                    c2 = _bt(_pixel(x, b, c, y0, x0 + 2), _pixel(x, b, c, y0 + 1, x0 + 2),
                             _pixel(x, b, c, y0 + 2, x0 + 2), _pixel(x, b, c, y0 + 3, x0 + 2))
                    c3 = _bt(_pixel(x, b, c, y0, x0 + 3), _pixel(x, b, c, y0 + 1, x0 + 3),
                             _pixel(x, b, c, y0 + 2, x0 + 3), _pixel(x, b, c, y0 + 3, x0 + 3))
                col = b * tiles + th * tiles_w + tw
                for i in range(4):                                           # v = t B, by rows
                    r = _bt(c0[i], c1[i], c2[i], c3[i])
                    v[i * 4 + 0, c, col] = r[0]
                    v[i * 4 + 1, c, col] = r[1]
                    v[i * 4 + 2, c, col] = r[2]
                    v[i * 4 + 3, c, col] = r[3]


@kernel(parallel=True)
def _winograd_output(m, tiles_h, tiles_w, y, add):
    """Y = A^T M A for every tile (added to y with `add`): 2x2 outputs each, cropped at odd edges; m is (16, K, B*T)."""
    batch, filters, out_h, out_w = y.shape
    tiles = tiles_h * tiles_w
    for bk in numba.prange(batch * filters):
        b = bk // filters
        k = bk % filters
        s = np.empty((2, 4), np.float32)
        for th in range(tiles_h):
            for tw in range(tiles_w):
                col = b * tiles + th * tiles_w + tw
                for j in range(4):      # s = A^T M
                    s[0, j] = m[j, k, col] + m[4 + j, k, col] + m[8 + j, k, col]
                    s[1, j] = m[4 + j, k, col] - m[8 + j, k, col] - m[12 + j, k, col]
                for i in range(2):
                    yy = 2 * th + i
                    if yy >= out_h:
                        break
                    left = s[i, 0] + s[i, 1] + s[i, 2]
                    y[b, k, yy, 2 * tw] = y[b, k, yy, 2 * tw] + left if add else left
                    if 2 * tw + 1 < out_w:
                        right = s[i, 1] - s[i, 2] - s[i, 3]
                        y[b, k, yy, 2 * tw + 1] = y[b, k, yy, 2 * tw + 1] + right if add else right


@kernel(parallel=True)
def _winograd_output_gradient(delta, tiles_h, tiles_w, m):
    """M = A dY A^T for every tile of the output gradient (2x2 each, zero beyond odd edges); m is (16, K, B*T)."""
    batch, filters, out_h, out_w = delta.shape
    tiles = tiles_h * tiles_w
    for bk in numba.prange(batch * filters):
        b = bk // filters
        k = bk % filters
        for th in range(tiles_h):
            for tw in range(tiles_w):
                y0, x0 = 2 * th, 2 * tw
                d00 = delta[b, k, y0, x0]
                d01 = delta[b, k, y0, x0 + 1] if x0 + 1 < out_w else np.float32(0.0)
                d10 = delta[b, k, y0 + 1, x0] if y0 + 1 < out_h else np.float32(0.0)
                d11 = delta[b, k, y0 + 1, x0 + 1] if y0 + 1 < out_h and x0 + 1 < out_w else np.float32(0.0)
                col = b * tiles + th * tiles_w + tw
                # t = A dY (rows d0 + d1, d0 - d1, -d1), then t A^T the same way along the columns
                for i in range(4):
                    if i == 0:
                        t0, t1 = d00, d01
                    elif i == 1:
                        t0, t1 = d00 + d10, d01 + d11
                    elif i == 2:
                        t0, t1 = d00 - d10, d01 - d11
                    else:
                        t0, t1 = -d10, -d11
                    m[i * 4 + 0, k, col] = t0
                    m[i * 4 + 1, k, col] = t0 + t1
                    m[i * 4 + 2, k, col] = t0 - t1
                    m[i * 4 + 3, k, col] = -t1


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


def convolve(x, u, pad, y, workspace=None, add=False, turned=False):
    """y = 3x3 stride-1 convolution of x (B, C, H, W) with Winograd filters u (16, K, C), into y (B, K, H', W')
    (with `add`: y += it). `turned`: with the filters of u turned round instead (see TURN), u being the forward's
    U (16, C', C) of a convolution from C channels to the C' channels x has, and y having C."""
    tiles_h, tiles_w, v, m = _tile_planes(x, u.shape[2] if turned else u.shape[1], y.shape[2:], workspace)
    _winograd_input(x, pad, tiles_h, tiles_w, v)
    if turned:
        threads.run(lambda i: np.matmul(u[TURNED_PLANES[i]].T, v[i], out=m[i]), 16)
    else:
        threads.run(lambda i: np.matmul(u[i], v[i], out=m[i]), 16)     # the 16 tile positions' GEMMs, shared out
    _winograd_output(m, tiles_h, tiles_w, y, add)
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
