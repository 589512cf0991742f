"""Darknet's maxpool_layer.c and avgpool_layer.c on the CPU.
"""
import numba
import numpy as np

from ...jit import kernel


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


@kernel(inline="always")
def window_max(a, b, c, d):
    """The maximum of a 2x2 window's values met in this order, as Darknet's loop meets them: from -FLT_MAX, each
    taken where greater (a NaN never wins)."""
    best = np.float32(-3.4028234663852886e38)
    best = a if a > best else best
    best = b if b > best else best
    best = c if c > best else best
    return d if d > best else best


@kernel(parallel=True)
def _maxpool_values(x, size, stride, pad, y):
    """_maxpool without the argmax, for inference: windows inside the image skip the bounds tests, and 2x2 windows
    of stride 2 (most YOLO pools) and of stride 1 get loops that vectorise. Same comparisons in the same order, so
    NaN and -FLT_MAX padding come out as in _maxpool."""
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
                    out[i, j] = window_max(top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1])
                j = inside
            elif rows_inside and size == 2 and stride == 1 and offset == 0:    # yolov3-tiny's 13x13 pool
                top = plane[y0]
                bottom = plane[y0 + 1]
                inside = min(out_w, width - 1)
                for j in range(inside):
                    out[i, j] = window_max(top[j], top[j + 1], bottom[j], bottom[j + 1])
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
