"""Darknet's im2col.c and col2im.c: an image (C, H, W) to its column matrix (C*size*size, out_h*out_w) and back,
whole or a band of output rows at a time (the pieces of convolution.py).
"""
import numba
import numpy as np

from ...jit import kernel, piece_kernel


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
def im2col_rows(x, size, stride, pad, out_w, first, last, col):
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
def col2im_rows(col, size, stride, pad, out_w, first, last, x):
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
