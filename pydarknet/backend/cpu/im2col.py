"""Darknet's im2col.c and col2im.c: an image (C, H, W) to its column matrix (C*size*size, out_h*out_w) and back,
whole or a band of output rows at a time (the pieces of convolution.py).
"""
import numba
import numpy as np

from ...jit import kernel, piece_kernel


@kernel(inline="always")
def copy_row(dst, src):
    """dst[:] = src[:dst.size] for 1-d arrays: indices from 0 need no wraparound test, so the loop is vector code
    (a slice assignment is not)."""
    for j in range(dst.size):
        dst[j] = src[j]


@kernel(inline="always")
def _copy_every_other(dst, src):
    """dst[:] = src[::2]."""
    for j in range(dst.size):
        dst[j] = src[2 * j]


@kernel(inline="always")
def _im2col_row(x, size, stride, pad, out_w, row, first, last, col):
    """Darknet's im2col_cpu for one column-matrix row (channel, kernel y, kernel x), output rows first..last-1:
    the columns [lo, hi) that fall inside the image copied in one loop without tests, zeros on either side."""
    channels, height, width = x.shape
    n = (last - first) * out_w
    shift = row % size - pad                        # column j reads image column shift + stride * j
    h_offset = (row // size) % size
    c = row // size // size
    lo = min(out_w, max(0, (stride - 1 - shift) // stride))
    hi = max(lo, min(out_w, (width - shift + stride - 1) // stride))
    for i in range(first, last):
        y = h_offset + i * stride - pad
        out = col[row * n + (i - first) * out_w:row * n + (i - first + 1) * out_w]
        if y < 0 or y >= height:
            out[:] = 0.0
            continue
        out[:lo] = 0.0
        out[hi:] = 0.0
        source = x[c, y, shift + stride * lo:]
        if stride == 1:
            copy_row(out[lo:hi], source)
        elif stride == 2:
            _copy_every_other(out[lo:hi], source)
        else:
            inside = out[lo:hi]
            for j in range(hi - lo):
                inside[j] = source[stride * j]


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
