"""What the three loss layers (yolo, region, detection) share: the anchor box and its delta (with box.iou),
the |delta|^2 cost, the truth rows a layer reads, and Darknet's printf of floats.

Arithmetic follows the C source: float32 where C computes in float, float64 where C promotes to double (`exp()`,
`log()`, `sqrt()`, `pow()` and double literals), rounding to float32 where C stores into a float. Numba promotes
float32 op int64 to float64, so every int that C would convert to float is converted here with `F32(...)` first.
"""
import math

import numpy as np

from .box import iou
from .jit import ieee_kernel


F32 = np.float32


@ieee_kernel(inline="always")
def rmse(ax, ay, aw, ah, bx, by, bw, bh):
    """box.c box_rmse(): float differences, pow and sqrt in double, returned as float."""
    dx = np.float64(ax - bx)
    dy = np.float64(ay - by)
    dw = np.float64(aw - bw)
    dh = np.float64(ah - bh)
    return F32(math.sqrt(dx * dx + dy * dy + dw * dw + dh * dh))


@ieee_kernel(inline="always")
def anchor_box(x, biases, n, index, i, j, lw, lh, w, h, stride):
    """get_yolo_box / get_region_box: x, y in float; exp(), the anchor and the division in double."""
    bx = (F32(i) + x[index]) / F32(lw)
    by = (F32(j) + x[index + stride]) / F32(lh)
    bw = F32(math.exp(np.float64(x[index + 2 * stride])) * np.float64(biases[2 * n]) / np.float64(w))
    bh = F32(math.exp(np.float64(x[index + 3 * stride])) * np.float64(biases[2 * n + 1]) / np.float64(h))
    return bx, by, bw, bh


@ieee_kernel(inline="always")
def delta_anchor_box(tx_, ty_, tw_, th_, x, biases, n, index, i, j, lw, lh, w, h, delta, scale, stride):
    """delta_yolo_box / delta_region_box: writes the four box deltas, returns the IoU of the prediction and truth."""
    bx, by, bw, bh = anchor_box(x, biases, n, index, i, j, lw, lh, w, h, stride)
    result = iou(bx, by, bw, bh, tx_, ty_, tw_, th_)
    tx = tx_ * F32(lw) - F32(i)
    ty = ty_ * F32(lh) - F32(j)
    tw = F32(math.log(np.float64(tw_ * F32(w) / biases[2 * n])))
    th = F32(math.log(np.float64(th_ * F32(h) / biases[2 * n + 1])))
    delta[index] = scale * (tx - x[index])
    delta[index + stride] = scale * (ty - x[index + stride])
    delta[index + 2 * stride] = scale * (tw - x[index + 2 * stride])
    delta[index + 3 * stride] = scale * (th - x[index + 3 * stride])
    return result


@ieee_kernel
def _sum_squares(a):
    total = 0.0
    for i in range(a.size):
        v = np.float64(a[i])
        total += v * v
    return total


def squared_magnitude(delta):
    """pow(mag_array(delta, n), 2): the float sum of squares (the -Ofast build vectorises it; we sum in double and
    round once), sqrt in double stored as float, squared in double stored as float."""
    with np.errstate(over="ignore"):    # past float32's range the cost is inf, as in C; the trainer says why
        total = F32(_sum_squares(np.ascontiguousarray(delta).reshape(-1)))
        return F32(np.float64(F32(math.sqrt(np.float64(total)))) ** 2)


def truth_rows(net, batch, truths):
    """net.truth as `batch` flat rows of `truths` floats, the slices `net.truth + b*l.truths` a Darknet layer reads.

    Darknet reads past the end of a short truth buffer; here what is missing is zero (no more boxes)."""
    flat = np.ascontiguousarray(net.truth, dtype=np.float32).reshape(-1)
    rows = np.zeros(batch * truths, np.float32)
    n = min(flat.size, rows.size)
    rows[:n] = flat[:n]
    return rows


def check_classes(rows, batch, truths, record, class_offset, classes, max_boxes, layer):
    """Darknet indexes the delta with the truth's class unchecked; refuse classes outside [0, classes) instead of
    writing into a neighbouring anchor's entries. Only boxes before the first x == 0 count, as in the loss."""
    for b in range(batch):
        for t in range(max_boxes):
            base = b * truths + t * record
            if base + record > rows.size or not rows[base]:
                break
            c = int(rows[base + class_offset])
            if not 0 <= c < classes:
                raise ValueError(f"layer {layer.index} ({layer.type}): truth box {t} of image {b} has class {c}, "
                                 f"outside the layer's {classes} classes")


def c_float(value):
    """printf's %f of a float promoted to double, including glibc's spelling of NaN and infinity."""
    v = float(value)
    if math.isnan(v):
        return "-nan" if np.signbit(value) else "nan"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return "%f" % v


def c_div(a, b):
    """C's float / int division: float32, x/0 is inf or NaN (x86's default NaN is negative, printed -nan)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return F32(a) / F32(b)
