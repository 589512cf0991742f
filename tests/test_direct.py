"""backend/cpu/direct.py: 3x3 stride-1 pad-1 convolutions with few input channels, without im2col, against float64."""
import numpy as np
import pytest

import reference
from pydarknet.activations import LEAKY, LINEAR, LOGISTIC
from pydarknet.backend import cpu
from pydarknet.backend.cpu.simd import FLT_MIN
from pydarknet.backend.cpu import direct
from test_threads import convolution_gradients

# (batch, channels, height, width, filters): odd sizes, filters not a multiple of 4 nor of 2, one pixel, one image
# whose rows are cut into bands for the threads, wide rows longer than a band
SHAPES = [(2, 3, 7, 9, 5), (3, 16, 12, 11, 8), (1, 5, 1, 1, 3), (1, 3, 61, 17, 16), (2, 2, 5, 1100, 9),
          (4, 32, 6, 6, 1)]


@pytest.mark.parametrize("batch, channels, height, width, filters", SHAPES)
def test_direct_forward_is_the_convolution(batch, channels, height, width, filters):
    rng = np.random.default_rng(channels * height + width)
    x = rng.standard_normal((batch, channels, height, width)).astype(np.float32)
    w = rng.standard_normal((filters, channels * 9)).astype(np.float32)
    y = np.full((batch, filters, height, width), np.nan, np.float32)
    assert direct.applies(channels, 3, 1, 1, 1)
    cpu.convolution_forward(x, w, 3, 1, 1, 1, y)
    np.testing.assert_allclose(y, reference.convolution(x, w, 3, 1, 1, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch, channels, height, width, filters", SHAPES)
@pytest.mark.parametrize("with_dx", [True, False])
def test_direct_backward_adds_the_gradients(batch, channels, height, width, filters, with_dx):
    rng = np.random.default_rng(filters + width)
    x = rng.standard_normal((batch, channels, height, width)).astype(np.float32)
    w = rng.standard_normal((filters, channels * 9)).astype(np.float32)
    delta = rng.standard_normal((batch, filters, height, width)).astype(np.float32)
    updates = rng.standard_normal(w.shape).astype(np.float32)
    dx = rng.standard_normal(x.shape).astype(np.float32)
    before_updates, before_dx = updates.copy(), dx.copy()
    cpu.convolution_backward(x, delta, w, 3, 1, 1, 1, updates, dx if with_dx else None)
    dw, dx_exact = convolution_gradients(x, w, delta, 3, 1, 1, 1)
    np.testing.assert_allclose(updates, before_updates + dw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, before_dx + dx_exact if with_dx else before_dx, rtol=1e-4, atol=1e-4)


def test_direct_takes_few_channels_and_the_setting(monkeypatch):
    assert direct.applies(32, 3, 1, 1, 1) and not direct.applies(33, 3, 1, 1, 1)
    assert not any(direct.applies(3, *other) for other in [(1, 1, 0, 1), (3, 2, 1, 1), (3, 1, 0, 1), (3, 1, 1, 3)])
    monkeypatch.setenv("PYDARKNET_DIRECT_MAX_CHANNELS", "0")
    assert not direct.applies(3, 3, 1, 1, 1)


def test_direct_is_what_the_forward_runs(monkeypatch):
    """With the direct loops replaced by a marker, a 3-channel 3x3 convolution's output is the marker: the path is
    taken; turned off by the setting, im2col gives the convolution."""
    x = np.ones((1, 3, 5, 5), np.float32)
    w = np.ones((2, 27), np.float32)
    y = np.zeros((1, 2, 5, 5), np.float32)
    monkeypatch.setattr(direct, "convolve", lambda x, weights, y: y.fill(-7.0))
    cpu.convolution_forward(x, w, 3, 1, 1, 1, y)
    assert (y == -7).all()
    monkeypatch.setenv("PYDARKNET_DIRECT_MAX_CHANNELS", "0")
    cpu.convolution_forward(x, w, 3, 1, 1, 1, y)
    assert y[0, 0, 2, 2] == 27 and y[0, 0, 0, 0] == 12


def _epilogue(rng, filters, activation, normalize):
    biases = rng.standard_normal(filters).astype(np.float32)
    if not normalize:
        return biases, activation, None, None, None
    scales = (rng.random(filters) + .5).astype(np.float32)
    mean = rng.standard_normal(filters).astype(np.float32)
    variance = (rng.random(filters) + .1).astype(np.float32)
    return biases, activation, scales, mean, variance


@pytest.mark.parametrize("activation", [LEAKY, LINEAR, LOGISTIC])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("channels, width, size", [(3, 37, 3), (16, 16, 3), (3, 7, 3), (64, 13, 3), (40, 20, 3),
                                                    (8, 20, 1), (300, 40, 1)])
@pytest.mark.parametrize("batch", [1, 2])
def test_the_epilogue_is_bias_activate_after_the_convolution(activation, normalize, channels, width, size, batch):
    """convolution_forward with an epilogue gives, to the bit, the convolution followed by bias_activate: the
    direct loops' and Winograd's output transform's fused writes (wide rows; 64 channels, odd width), the GEMM
    pieces' on Numba's threads (one image: im2col, 1x1, the 1x1 split into pieces), and the other paths (narrow
    rows, images as pieces); denormal results flushed, NaN kept."""
    rng = np.random.default_rng(channels + width + size)
    x = rng.standard_normal((batch, channels, 9, width)).astype(np.float32)
    x[0, :, 4, 5] = np.nan
    w = rng.standard_normal((6, channels * size * size)).astype(np.float32)
    epilogue = _epilogue(rng, 6, activation, normalize)
    epilogue[0][1] = 0.0
    w[1] = 0.0
    w[1, 0] = 1e-39     # products below FLT_MIN: denormal sums
    pad = size // 2
    expected = np.empty((batch, 6, 9, width), np.float32)
    cpu.convolution_forward(x, w, size, 1, pad, 1, expected, derived={})
    cpu.bias_activate(expected, *epilogue)
    y = np.full_like(expected, 7.0)
    cpu.convolution_forward(x, w, size, 1, pad, 1, y, derived={}, epilogue=epilogue)
    np.testing.assert_array_equal(y, expected)
    assert np.isnan(y).any() and not ((np.abs(y) < FLT_MIN) & (y != 0)).any()


def test_wide_rows_take_the_register_blocks(monkeypatch):
    """Rows of 16 pixels and more go through direct.forward (a marker shows it), narrower ones through the
    band loops."""
    w = np.ones((2, 27), np.float32)
    monkeypatch.setattr(direct, "forward", lambda x, packed, y, epilogue=None, pool=False: y.fill(-7.0))
    for width, marked in ((16, True), (15, False)):
        y = np.zeros((1, 2, 5, width), np.float32)
        cpu.convolution_forward(np.ones((1, 3, 5, width), np.float32), w, 3, 1, 1, 1, y)
        assert (y == -7).all() == marked


@pytest.mark.parametrize("activation", [LEAKY, LINEAR, LOGISTIC])
@pytest.mark.parametrize("channels, height, width", [(3, 6, 34), (16, 4, 16), (64, 6, 18), (3, 4, 8)])
def test_pooled_convolution_is_the_maxpool_of_the_convolution(monkeypatch, activation, channels, height, width):
    """convolution_forward(pool=True) gives, to the bit, the 2x2 stride-2 maxpool of the finished convolution:
    the direct loops (wide rows) and Winograd's output transform (64 channels) pooling as they write (LEAKY/LINEAR:
    no scratch copy is pooled), and the other paths through a scratch copy (narrow rows, another activation); NaN
    and ties as Darknet's maxpool has them."""
    from pydarknet.backend.cpu import convolution
    rng = np.random.default_rng(channels + width)
    x = rng.integers(-2, 3, (2, channels, height, width)).astype(np.float32)     # many ties
    x[1, 0, 2, 3] = np.nan
    w = rng.integers(-1, 2, (6, channels * 9)).astype(np.float32)
    epilogue = _epilogue(rng, 6, activation, True)
    full = np.empty((2, 6, height, width), np.float32)
    cpu.convolution_forward(x, w, 3, 1, 1, 1, full, derived={}, epilogue=epilogue)
    expected = np.empty((2, 6, height // 2, width // 2), np.float32)
    cpu.maxpool_forward(full, 2, 2, 1, expected, with_argmax=False)
    if activation != LOGISTIC and width >= 16:
        monkeypatch.setattr(convolution, "maxpool_forward", None)      # pooled as written, or a TypeError
    y = np.full_like(expected, 7.0)
    cpu.convolution_forward(x, w, 3, 1, 1, 1, y, derived={}, epilogue=epilogue, pool=True)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("activation", [LEAKY, LINEAR])
@pytest.mark.parametrize("size, stride", [(3, 2), (3, 1), (1, 1)])
def test_the_epilogue_of_columns_made_piece_by_piece(monkeypatch, activation, size, stride):
    """One image whose column matrix is made piece by piece (forced here: a row a piece) on Numba's threads: each
    piece applies the epilogue to its outputs, to the bit bias_activate's after the plain convolution."""
    from pydarknet.backend.cpu import convolution
    monkeypatch.setenv("PYDARKNET_DIRECT_MAX_CHANNELS", "0")
    monkeypatch.setattr(convolution, "_LARGE_COLUMNS", 1)
    monkeypatch.setattr(convolution, "_PIECE_COLUMNS", 1)
    monkeypatch.setattr(convolution, "_PIECE_MIN_WIDTH", 1)
    rng = np.random.default_rng(size + stride)
    x = rng.standard_normal((1, 5, 17, 23)).astype(np.float32)
    w = rng.standard_normal((7, 5 * size * size)).astype(np.float32)
    epilogue = _epilogue(rng, 7, activation, True)
    pad = size // 2
    shape = (1, 7, (17 + 2 * pad - size) // stride + 1, (23 + 2 * pad - size) // stride + 1)
    expected = np.empty(shape, np.float32)
    cpu.convolution_forward(x, w, size, stride, pad, 1, expected)
    cpu.bias_activate(expected, *epilogue)
    y = np.full(shape, np.nan, np.float32)
    monkeypatch.setattr(convolution, "bias_activate", None)     # the pieces apply it, no pass after them
    cpu.convolution_forward(x, w, size, stride, pad, 1, y, epilogue=epilogue)
    np.testing.assert_array_equal(y, expected)
