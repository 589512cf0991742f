"""The convolution on the CPU: convolutional_layer.c's loop of im2col and GEMM (gemm.c) image by image, or Winograd
(winograd.py) or direct 3x3 loops (direct.py) where they pay; and local_layer.c's unshared weights. threads.py
shares the GEMMs and the images out over pydarknet's threads.
"""
import numba
import numpy as np

from ...activations import LEAKY, LINEAR
from ...jit import kernel
from . import direct, sgemm, threads, winograd
from .activations import bias_activate, epilogue_arguments
from .pooling import maxpool_forward
from .im2col import col2im_rows, im2col, im2col_rows


# ---- GEMM (gemm.c): numpy's BLAS, in single-threaded calls -----------------------------------------------------

_PIECE_FLOPS = 4e6      # below this a GEMM is not worth sharing out


def gemm(a, b, out=None):
    """out = a @ b in float32: single-threaded BLAS calls on pieces shared out over Numba's threads (sgemm.py) or
    threads.run's. The pieces cut the longer of out's two sides, so that the operand every piece reads whole is the
    smaller one (each BLAS call packs it again)."""
    out = np.empty((a.shape[0], b.shape[1]), np.float32) if out is None else out
    _gemm(a, b, out)
    return out


def _gemm(a, b, out, finish=None):
    """gemm into out; on Numba's threads each piece also applies `finish` (an epilogue as _per_filter makes it,
    out's rows being filters). Returns whether it did."""
    m, n = out.shape
    # a piece a thread: Numba shares pieces out statically, and each BLAS call packs its operands again
    pieces = min(threads.threads(), int(2.0 * m * n * a.shape[1] / _PIECE_FLOPS))
    if (pieces >= 2 or finish is not None) and _on_numba(a, b, out):
        by_columns, count = n >= m, max(pieces, 1)
        # n/count rounded up to 16 columns (whole cache lines), or m/count rows
        step = -(-(-(-n // count)) // 16) * 16 if by_columns else -(-m // count)
        sgemm.pieces(*sgemm.library(), a, b, out, step, by_columns, *epilogue_arguments(finish, out[0]))
        return finish is not None
    threads.limit_blas()
    if pieces < 2 or threads.inside():     # inside a piece the thread is already one of the parallel ones
        np.matmul(a, b, out=out)
    elif n >= m:
        step = -(-(-(-n // pieces)) // 16) * 16
        threads.run(lambda i: np.matmul(a, b[:, i * step:(i + 1) * step], out=out[:, i * step:(i + 1) * step]),
                    -(-n // step))
    else:
        step = -(-m // pieces)
        threads.run(lambda i: np.matmul(a[i * step:(i + 1) * step], b, out=out[i * step:(i + 1) * step]),
                    -(-m // step))
    return False


def _on_numba(a, b, out):
    """Whether out = a @ b can run on Numba's threads (sgemm.py): numpy's cblas_sgemm found, BLAS reads a and b in
    place and writes out's rows, and this thread is not already one of threads.py's pieces."""
    return sgemm.library() is not None and not threads.inside() and sgemm.fits(a, b, out)


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


def convolution_forward(x, weights, size, stride, pad, groups, y, workspace=None, derived=None, epilogue=None,
                        pool=False):
    """y = the convolution of x (B, C, H, W) with weights (K, C/groups*size*size): Darknet's loop of im2col and
    GEMM per image and group, or Winograd, or for few input channels direct 3x3 loops (direct.py). `derived` (a
    dict the caller empties when the weights change) keeps the Winograd and direct filters between calls. Without
    it the weights are used once, and Winograd, whose filter transform pays over many calls, is not taken.

    `epilogue` (biases, activation, scales, mean, variance): then y = bias_activate(that convolution, ...), the
    inference pass of a convolutional layer; the direct loops, Winograd's output transform and the GEMM pieces on
    Numba's threads apply it (LEAKY or LINEAR) as they write. `pool` (an even-sized output): y gets the 2x2
    stride-2 max pool of the result, the inference pass of a convolution and the [maxpool] after it; the direct
    loops and Winograd's output transform pool as they write, other paths pool a scratch copy."""
    _, c, height, width = x.shape
    fused = epilogue is not None and epilogue[1] in (LEAKY, LINEAR)
    on_winograd = derived is not None and winograd.applies(c, height, width, size, stride, groups)
    on_direct = not on_winograd and direct.applies(c, size, stride, pad, groups) and direct.fits(width)
    if pool and not (fused and (on_direct or on_winograd)):
        full = threads.buffer(y.size * 4, "unpooled").reshape(y.shape[:2] + (2 * y.shape[2], 2 * y.shape[3]))
        convolution_forward(x, weights, size, stride, pad, groups, full, workspace, derived, epilogue)
        return maxpool_forward(full, 2, 2, 0, y, with_argmax=False)[0]
    finish = _per_filter(epilogue) if fused else None
    if on_winograd:
        if "winograd" not in derived:
            derived["winograd"] = winograd.transform_weights(weights, c)
        winograd.convolve(x, derived["winograd"], pad, y, workspace, epilogue=finish, pool=pool)
    elif on_direct:
        direct.forward(x, _direct_filters(weights, c, derived), y, finish, pool)
    else:
        fused = _convolve(x, weights, size, stride, pad, groups, y, workspace, finish)
    if epilogue is not None and not fused:
        bias_activate(y, *epilogue)
    return y


def _direct_filters(weights, channels, derived):
    """direct.pack's filters, kept in `derived` where there is one."""
    packed = None if derived is None else derived.get("direct")
    if packed is None:
        packed = direct.pack(weights, channels)
        if derived is not None:
            derived["direct"] = packed
    return packed


def _per_filter(epilogue):
    """An epilogue as direct.forward and winograd.convolve take it: (mean, scale, bias, activation) per filter,
    scale computed in double and rounded as activations.py's _bias_activate does."""
    biases, activation, scales, mean, variance = epilogue
    if scales is None:
        return np.zeros_like(biases), np.ones_like(biases), biases, activation
    scale = (scales.astype(np.float64) / (np.sqrt(variance.astype(np.float64)) + 1e-6)).astype(np.float32)
    return mean, scale, biases, activation


def _convolve(x, weights, size, stride, pad, groups, y, workspace, finish=None):
    """convolution_forward's other paths: direct loops on narrow rows, im2col and GEMM. `finish`: an epilogue
    (_per_filter's) the GEMM pieces may apply as they finish; returns whether they did."""
    batch, c, height, width = x.shape
    filters = weights.shape[0]
    _, _, out_h, out_w = y.shape
    if direct.applies(c, size, stride, pad, groups):
        direct.convolve(x, weights, y)
        return False
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
            im2col_rows(xg, size, stride, pad, out_w, 0, out_h, col.reshape(-1))
        np.matmul(wg, col, out=yg)

    if batch * groups == 1:     # one GEMM, cut into pieces
        xg = x[0]
        if in_pieces:
            return _convolve_in_pieces(xg, weights, size, stride, pad, out_h, out_w, y[0].reshape(filters, -1),
                                       finish)
        col = xg.reshape(c, -1) if one_by_one else im2col(xg, size, stride, pad, out_h, out_w, workspace)
        return _gemm(weights, col, y[0].reshape(filters, -1), finish)
    threads.run(image, batch * groups)      # the images (and groups) are the pieces
    return False


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


def _convolve_in_pieces(x, weights, size, stride, pad, out_h, out_w, y, finish=None):
    """y (K, out_h*out_w) = weights @ im2col(x), made piece by piece over output rows (shared out over Numba's
    threads, or threads.run's); on Numba's threads `finish` (an epilogue) is applied too: returns whether."""
    rows = weights.shape[1]
    per_piece = _rows_per_piece(rows, out_h, out_w, False)
    count = -(-(-(-out_h // per_piece)) // threads.threads()) * threads.threads()
    per_piece = -(-out_h // count)      # as many pieces of each size for every thread (a static share-out)
    if _on_numba(weights, weights, y):      # the columns are this function's own, made to fit
        columns = threads.buffer(threads.threads() * rows * per_piece * out_w, "piece columns")
        _columns_times_weights(*sgemm.library(), x, weights, size, stride, pad, out_h, out_w, per_piece, y,
                               columns.reshape(threads.threads(), -1), *epilogue_arguments(finish, y[0]))
        return finish is not None

    def piece(i):
        first, last = i * per_piece, min(out_h, (i + 1) * per_piece)
        col = threads.buffer(rows * (last - first) * out_w)
        im2col_rows(x, size, stride, pad, out_w, first, last, col)
        np.matmul(weights, col.reshape(rows, -1), out=y[:, first * out_w:last * out_w])

    threads.run(piece, -(-out_h // per_piece))
    return False


@kernel(parallel=True, nogil=True)
def _columns_times_weights(address, wide, x, weights, size, stride, pad, out_h, out_w, per_piece, y, columns,
                           mean, scale, bias, activation, finish):
    """_convolve_in_pieces's pieces over Numba's threads, each making its columns in its own row of `columns` (and
    with `finish`, applying the epilogue to its outputs)."""
    rows = weights.shape[1]
    for i in numba.prange(-(-out_h // per_piece)):
        first = i * per_piece
        last = min(out_h, first + per_piece)
        n = (last - first) * out_w
        col = columns[numba.get_thread_id()][:rows * n]
        im2col_rows(x, size, stride, pad, out_w, first, last, col)
        sgemm.product(address, wide, weights, col.reshape((rows, n)), y[:, first * out_w:last * out_w])
        if finish:
            sgemm.finish_rows(y, 0, y.shape[0], first * out_w, last * out_w, mean, scale, bias, activation)


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
            im2col_rows(x, size, stride, pad, out_w, first, last, col.reshape(-1))
            _add_product(col, dp.T, total, fresh and first == 0)
        if dx is not None:
            gradient_columns = gemm(w.T, dp, out=threads.buffer(rows * n, "gradient").reshape(rows, n))
            col2im_rows(gradient_columns.reshape(-1), size, stride, pad, out_w, first, last, dx)


def _add_product(a, b, total, fresh):
    """total += a @ b, or total = a @ b when fresh (no product buffer to add)."""
    if fresh:
        gemm(a, b, out=total)
    else:
        total += gemm(a, b, out=threads.buffer(total.size, "product").reshape(total.shape))


# ---- local (local_layer.c): a filter bank of its own at every output location ----------------------------------

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
