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
    """U = G g G^T for every 3x3 filter: (K, C*9) -> (16, K, C), ready for one GEMM per tile position."""
    u = np.empty((16, weights.shape[0], channels), np.float32)
    _transform_filters(weights.reshape(weights.shape[0], channels, 3, 3), u)
    return u


def transform_turned(weights, channels):
    """The Winograd filters of the input gradient's convolution: every 3x3 filter turned round (180 degrees), input
    and output channels swapped: (K, C*9) -> (16, C, K)."""
    filters = weights.shape[0]
    turned = weights.reshape(filters, channels, 3, 3)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return transform_weights(np.ascontiguousarray(turned).reshape(channels, filters * 9), filters)


@kernel(parallel=True)
def _transform_filters(g, u):
    """U = G g G^T in double for each filter (k, c), G = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]; one
    pass over the weights (numpy's einsum took 0.1-0.3 s a layer, in every command's first forward)."""
    filters, channels = g.shape[:2]
    for kc in numba.prange(filters * channels):
        k = kc // channels
        c = kc % channels
        t = np.empty((4, 3))
        for j in range(3):      # t = G g
            g0, g1, g2 = np.float64(g[k, c, 0, j]), np.float64(g[k, c, 1, j]), np.float64(g[k, c, 2, j])
            t[0, j] = g0
            t[1, j] = .5 * g0 + .5 * g1 + .5 * g2
            t[2, j] = .5 * g0 - .5 * g1 + .5 * g2
            t[3, j] = g2
        for i in range(4):      # u = t G^T
            t0, t1, t2 = t[i, 0], t[i, 1], t[i, 2]
            u[i * 4 + 0, k, c] = np.float32(t0)
            u[i * 4 + 1, k, c] = np.float32(.5 * t0 + .5 * t1 + .5 * t2)
            u[i * 4 + 2, k, c] = np.float32(.5 * t0 - .5 * t1 + .5 * t2)
            u[i * 4 + 3, k, c] = np.float32(t2)


@kernel(parallel=True)
def _winograd_input(x, pad, tiles_h, tiles_w, v):
    """V = B^T d B for every 4x4 input tile (stride 2), zero outside the image; v is (16, C, B*T)."""
    batch, channels, height, width = x.shape
    tiles = tiles_h * tiles_w
    d = np.empty((4, 4), np.float32)
    for bc in numba.prange(batch * channels):
        b = bc // channels
        c = bc % channels
        d = np.empty((4, 4), np.float32)
        t = np.empty((4, 4), np.float32)
        for th in range(tiles_h):
            for tw in range(tiles_w):
                y0 = 2 * th - pad
                x0 = 2 * tw - pad
                for i in range(4):
                    yy = y0 + i
                    for j in range(4):
                        xx = x0 + j
                        if 0 <= yy < height and 0 <= xx < width:
                            d[i, j] = x[b, c, yy, xx]
                        else:
                            d[i, j] = 0.0
                for j in range(4):       # t = B^T d
                    t[0, j] = d[0, j] - d[2, j]
                    t[1, j] = d[1, j] + d[2, j]
                    t[2, j] = d[2, j] - d[1, j]
                    t[3, j] = d[1, j] - d[3, j]
                col = b * tiles + th * tiles_w + tw
                for i in range(4):       # v = t B
                    v[i * 4 + 0, c, col] = t[i, 0] - t[i, 2]
                    v[i * 4 + 1, c, col] = t[i, 1] + t[i, 2]
                    v[i * 4 + 2, c, col] = t[i, 2] - t[i, 1]
                    v[i * 4 + 3, c, col] = t[i, 1] - t[i, 3]


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


def convolve(x, u, pad, y, workspace=None, add=False):
    """y = 3x3 stride-1 convolution of x (B, C, H, W) with Winograd filters u (16, K, C), into y (B, K, H', W')
    (with `add`: y += it)."""
    batch, channels = x.shape[:2]
    filters = u.shape[1]
    out_h, out_w = y.shape[2:]
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    cols = batch * tiles_h * tiles_w
    need = workspace_size(channels, filters, cols)
    space = np.empty(need, np.float32) if workspace is None or workspace.size < need else workspace
    v_size = 16 * (channels * cols + PLANE_GAP)
    v = _planes(space, channels, cols)
    m = _planes(space[v_size:], filters, cols)
    _winograd_input(x, pad, tiles_h, tiles_w, v)
    threads.run(lambda i: np.matmul(u[i], v[i], out=m[i]), 16)     # the 16 tile positions' GEMMs, shared out
    _winograd_output(m, tiles_h, tiles_w, y, add)
    return y


def filter_gradient(x, delta, pad, weight_updates, workspace=None, products=None):
    """weight_updates (K, C*9) += the filter gradient of the 3x3 stride-1 convolution of x (B, C, H, W) whose output
    gradient is delta (B, K, H', W'): G^T [sum over tiles of (A dY A^T) (B^T d B)^T] G, one GEMM (K x tiles x C) per
    tile position; `products` (16*K*C floats) holds their sums."""
    batch, channels = x.shape[:2]
    filters = delta.shape[1]
    out_h, out_w = delta.shape[2:]
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    cols = batch * tiles_h * tiles_w
    need = workspace_size(channels, filters, cols)
    space = np.empty(need, np.float32) if workspace is None or workspace.size < need else workspace
    v = _planes(space, channels, cols)
    m = _planes(space[16 * (channels * cols + PLANE_GAP):], filters, cols)
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
