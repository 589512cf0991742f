"""[logistic] (Darknet's logistic_layer.c): the forward, the cross-entropy loss and delta, and that delta is minus
the gradient of the summed loss, through a tiny [connected] -> [logistic] network by finite differences.

Forward, loss and delta run on the CPU kernels and on a GPU played by the CPU (conftest's `device`: the GPU
backend's code on device arrays that refuse to mix with host arrays), and on a real GPU where there is one.
"""
import numpy as np
import pytest

from pydarknet import backend
from pydarknet.cfg import read_cfg
from pydarknet.layers import DARKNET_ONLY, LAYERS, Logistic
from pydarknet.network import Network

import reference
from test_gradients import numerical_gradient, relative_error

SHAPE = (3, 5, 7)       # odd sizes, batch 2


def build(tmp_path, body, shape=SHAPE, batch=2, device="cpu"):
    c, h, w = shape
    path = tmp_path / "logistic.cfg"
    path.write_text(f"[net]\nbatch={batch}\nchannels={c}\nheight={h}\nwidth={w}\n\n{body}")
    return Network(read_cfg(path), str(path), device=device)


def host(a):
    return np.asarray(backend.to_host(a), np.float64)


def test_logistic_is_a_layer_type():
    assert LAYERS["logistic"] is Logistic
    assert "logistic" not in DARKNET_ONLY


def test_logistic_prints_darknets_line(tmp_path):
    """make_logistic_layer's fprintf: "logistic x entropy" padded to 47 characters, then the inputs as %4d."""
    net = build(tmp_path, "[convolutional]\nfilters=2\nsize=1\n\n[logistic]\n")
    layer = net.layers[1]
    assert net.summary().splitlines()[2] == "    1 logistic x entropy                             %4d" % 70
    assert layer.out_shape == layer.in_shape == (2, 5, 7)
    assert layer.darknet_lwhc() == (7, 5, 2)        # parse_logistic: l.w, l.h, l.c are the input's
    assert layer.file_floats == 0 and layer.nweights == 0


def test_logistic_forward(tmp_path, device):
    net = build(tmp_path, "[logistic]\n", device=device)
    x = (3 * np.random.default_rng(1).standard_normal((2,) + SHAPE)).astype(np.float32)
    x[0, 0, 0, :4] = [0, 15, -15, 80]         # the flat ends, and a value whose logistic rounds to 1
    y = host(net.predict(x))
    np.testing.assert_allclose(y, reference.activate(x, "logistic"), rtol=1e-6, atol=0)
    assert net.layers[0].cost is None and net.cost is None      # no truth, no loss (inference)


@pytest.mark.parametrize("targets", ["binary", "soft"])
def test_logistic_cross_entropy_loss_and_delta(tmp_path, device, targets):
    net = build(tmp_path, "[logistic]\n", device=device)
    rng = np.random.default_rng(2)
    x = (2 * rng.standard_normal((2,) + SHAPE)).astype(np.float32)
    truth = (rng.random(x.shape) < .3) if targets == "binary" else rng.random(x.shape)
    truth = truth.astype(np.float32)
    net.train, net.truth = True, truth.reshape(2, -1)
    net.forward(x)
    layer = net.layers[0]
    p = reference.activate(x, "logistic")
    loss, delta = reference.logistic_cross_entropy(p, truth.astype(np.float64))
    np.testing.assert_allclose(host(layer.output), p, rtol=1e-6)
    np.testing.assert_allclose(host(layer.delta), delta, rtol=1e-5, atol=1e-7)
    assert layer.cost == pytest.approx(loss.sum(), rel=1e-5)      # l.cost = sum_array of the loss
    assert net.cost == pytest.approx(layer.cost)                   # the only layer with a cost: the mean is it
    dx = backend.to_device(np.ones(x.shape, np.float32), layer.delta)
    with backend.on_device(net.device):
        layer.backward(None, dx, net)                              # axpy: dx += delta
    np.testing.assert_allclose(host(dx), 1 + host(layer.delta), rtol=1e-6)


def test_logistic_delta_is_minus_the_gradient_of_the_cross_entropy(tmp_path):
    """[connected] -> [logistic] trained on one batch: the logistic's delta, the connected layer's delta (what the
    logistic's backward added into it) and its weight and bias updates equal minus the derivative of the summed
    cross-entropy, taken by central differences on a float64 forward of the same two layers."""
    net = build(tmp_path, "[connected]\noutput=6\nactivation=linear\n\n[logistic]\n", shape=(5, 1, 1))
    connected, logistic = net.layers
    rng = np.random.default_rng(3)
    x32 = rng.standard_normal((2, 5, 1, 1)).astype(np.float32)
    connected.weights[...] = rng.standard_normal(connected.weights.shape).astype(np.float32) * .7
    connected.biases[...] = rng.standard_normal(connected.biases.shape).astype(np.float32) * .3
    truth32 = np.float32([[1, 0, 0, 1, .25, .8], [0, 1, 1, 0, .5, .1]])
    x, weights, biases, truth = (a.astype(np.float64) for a in (x32, connected.weights, connected.biases, truth32))
    net.train, net.truth = True, truth32
    net.forward(x32)
    net.backward()

    def loss_of_z(z):
        return reference.logistic_cross_entropy(reference.activate(z, "logistic"), truth)[0].sum()

    def loss_of_parameters():
        return loss_of_z(x.reshape(2, 5) @ weights.T + biases)

    z = host(connected.output).reshape(2, 6)
    np.testing.assert_allclose(z, x.reshape(2, 5) @ weights.T + biases, rtol=1e-5, atol=1e-6)
    assert logistic.cost == pytest.approx(loss_of_z(z), rel=1e-5)
    minus_dz = -numerical_gradient(lambda: loss_of_z(z), z, 1.0)
    for what, ours in [("logistic delta", logistic.delta), ("connected delta", connected.delta)]:
        err = relative_error(host(ours).reshape(2, 6), minus_dz)
        assert err <= 1e-4, f"{what}: relative error {err:.2e} against minus the numeric gradient"
    for what, ours, array in [("weight_updates", connected.weight_updates, weights),
                              ("bias_updates", connected.bias_updates, biases)]:
        err = relative_error(host(ours), -numerical_gradient(loss_of_parameters, array, 1.0))
        assert err <= 1e-4, f"connected {what}: relative error {err:.2e} against minus the numeric gradient"


def test_the_vector_logistic_is_libms_to_the_bit():
    """backend/cpu's logistic loop computes exp in straight arithmetic (it becomes vector code) instead of libm's:
    on 2 million values of every scale, a sweep through the float32 bit patterns and the edges (0, +-inf, NaN,
    where 1 + exp(-x) rounds to 1 or the result to a denormal), it gives Darknet's 1 / (1 + exp(-x)) in double
    rounded to float32, as math.exp does, bit for bit."""
    from pydarknet.activations import LOGISTIC
    from pydarknet.backend import cpu
    rng = np.random.default_rng(5)
    x = np.concatenate([(rng.standard_normal(500_000) * s) for s in (1, 5, 20, 100)]).astype(np.float32)
    sweep = np.arange(0, 2 ** 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = np.array([0, -0., np.inf, -np.inf, np.nan, 88.7, -88.7, 103, -103, 708.5, -709.5, 745, -746, 3e38, -3e38,
                      1e-45], np.float32)
    x = np.concatenate([x, sweep, edges])
    with np.errstate(over="ignore"):
        expected = (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)
    expected[np.abs(expected) < np.finfo(np.float32).tiny] = 0.0      # Darknet's values with denormals flushed
    y = cpu.activate(x.copy(), LOGISTIC)
    np.testing.assert_array_equal(y, expected)
    rows = np.stack([x[:1000], x[1000:2000], x[2000:3000]]).reshape(1, 3, 10, 100)
    cpu.activate(rows[:, :, 2:], LOGISTIC)      # a yolo head's rows, a view: the same values, in place
    np.testing.assert_array_equal(rows[0, :, 2:], expected[:3000].reshape(3, 10, 100)[:, 2:])
    np.testing.assert_array_equal(rows[0, :, :2], x[:3000].reshape(3, 10, 100)[:, :2])     # untouched
