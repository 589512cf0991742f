"""Every layer type's backward pass against central finite differences of a float64 oracle (tests/reference.py).

For each layer: a tiny network from a cfg string, a training forward (which zeroes the deltas and keeps the batch
statistics), then the oracle's forward must equal the layer's (float32 against float64, 1e-5). With an upstream
gradient d set into `layer.delta`, the backward pass must produce J^T d: what it ADDS into dx, and the parameter
gradients in weight_updates, bias_updates and scale_updates, each equal to the derivative of L = sum(d * f) taken
numerically on the oracle. The quirks of Darknet's backward that pydarknet keeps are asserted as such: 1x1 stride-1
convolutions, reorg, reverse upsample and [batchnorm] overwrite dx; dropout masks all of dx; the batch-norm backward
differentiates a slightly different forward (see reference.batchnorm_as_differentiated); a shortcut between
different shapes scales all of dx by alpha; softmax and cost pass their delta straight through.

Set PYDARKNET_GRADIENT_REPORT=1 (or run with -v) to see the worst relative error per layer type.
"""
import os

import numpy as np
import pytest

from pydarknet.errors import CfgError

from pydarknet.activations import ACTIVATIONS
from pydarknet.backend import cpu
from pydarknet.backend.cpu import winograd
from pydarknet.cfg import read_cfg
from pydarknet.network import Network

import cuda_emulator
import reference

# Central differences on the float64 oracle: the truncation error is O(EPS^2) and the rounding error
# O(1e-16 / EPS), both far below TOL. A small EPS also keeps every perturbation far from an activation's kinks:
# inputs are drawn so that each pre-activation is at least MARGIN away from one, and MARGIN is more than
# EPS times the largest input or weight (which bounds how far one perturbation moves a pre-activation).
EPS = 1e-4
MARGIN = 2e-3
TOL = 1e-3          # relative L2 error per array, float32 analytic against float64 numeric
FORWARD_TOL = 1e-5  # the oracle's forward against the layer's

WORST = {}


@pytest.fixture(autouse=True, params=["cpu", "cuda-emulator"])
def kernels(request, monkeypatch):
    """Every test runs on the CPU backend's kernels and on the GPU backend's (its CUDA kernels compiled for the CPU
    by tests/cuda_emulator.py); the golden tests also run on a real GPU where there is one."""
    if request.param == "cuda-emulator":
        cuda_emulator.install(monkeypatch)


@pytest.fixture(scope="module", autouse=True)
def worst_error_report(request):
    yield
    if WORST and (os.environ.get("PYDARKNET_GRADIENT_REPORT") or request.config.option.verbose > 0):
        lines = ["", "worst relative error of each layer type's backward against finite differences:"]
        lines += [f"  {kind:15s} {err:.2e}  ({what})" for kind, (err, what) in sorted(WORST.items())]
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print("\n".join(lines))


# ---- helpers ------------------------------------------------------------------------------------------------

def relative_error(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    assert ours.shape == theirs.shape
    scale = max(np.linalg.norm(theirs), np.linalg.norm(ours))
    return 0.0 if scale < 1e-10 else np.linalg.norm(ours - theirs) / scale


def check(kind, what, ours, numeric, tol=TOL):
    """Assert that an analytic gradient equals the numeric one; remember the worst error per layer type."""
    err = relative_error(ours, numeric)
    if tol >= err >= WORST.get(kind, (-1.0, ""))[0]:
        WORST[kind] = (err, what)
    assert err <= tol, f"{kind} {what}: relative error {err:.2e} against finite differences"


def check_forward(kind, ours, oracle):
    np.testing.assert_allclose(np.asarray(ours, np.float64), oracle, rtol=FORWARD_TOL, atol=FORWARD_TOL,
                               err_msg=f"{kind}: the float64 oracle's forward differs from the layer's")


def numerical_gradient(f, array, d):
    """d/d(array) of sum(d * f()) by central differences; f reads `array`, which is perturbed in place."""
    grad = np.zeros(array.shape)
    for index in np.ndindex(array.shape):
        old = array[index]
        array[index] = old + EPS
        plus = np.sum(d * f())
        array[index] = old - EPS
        minus = np.sum(d * f())
        array[index] = old
        grad[index] = (plus - minus) / (2 * EPS)
    return grad


def network(tmp_path, body, shape, batch=2):
    """A network of the cfg sections in `body` on a (c, h, w) input, in training mode without a loss."""
    c, h, w = shape
    path = tmp_path / "layers.cfg"
    path.write_text(f"[net]\nbatch={batch}\nchannels={c}\nheight={h}\nwidth={w}\n\n{body}")
    net = Network(read_cfg(path), str(path))
    net.init_random(0)
    net.train = True
    net.truth = None
    return net


def f32(a):
    """a as float32, and the same values in float64 for the oracle."""
    a = np.asarray(a, np.float32)
    return a, a.astype(np.float64)


def layer_input(net, i):
    source = net.input if i == 0 else net.layers[i - 1].output
    return source.reshape((source.shape[0],) + net.layers[i].in_shape)


def backward(net, i, d, dx0):
    """Set layer i's delta to d and run its backward pass into a copy of dx0 (the previous layer's delta)."""
    layer = net.layers[i]
    layer.delta[...] = d.reshape(layer.delta.shape)
    dx = None if dx0 is None else dx0.copy()
    layer.backward(layer_input(net, i), dx, net)
    return dx


def draw(rng, shape, scale=1.0):
    return f32(scale * rng.standard_normal(shape))


def away_from_kinks(activation, make, tries=500):
    """make(rng) -> (values, pre-activations): the first seed whose pre-activations keep MARGIN from the kinks
    (make returns None for the pre-activations to refuse a draw for reasons of its own)."""
    for seed in range(tries):
        values, z = make(np.random.default_rng(seed))
        if z is not None and reference.kink_distance(z, activation).min() > MARGIN:
            return values
    raise AssertionError(f"no seed keeps the {activation} pre-activations away from its kinks")


def well_spread(z, batch_normalize):
    """Batch statistics that a perturbation of EPS cannot swing: with batch 2 and spatial 1 (a connected layer)
    a channel's two values may lie close together, and batch-norm then divides by their tiny distance."""
    return not batch_normalize or reference.batch_statistics(z)[1].min() > .1


def upstream(rng, out_shape, in_shape):
    """An upstream gradient d (float32 for the layer, the same values in float64) and a random dx to add into."""
    return f32(rng.standard_normal(out_shape)), rng.standard_normal(in_shape).astype(np.float32)


# ---- activations --------------------------------------------------------------------------------------------

def test_activation_values_and_gradients_match_darknets_formulas():
    """Each activation's value, and its gradient as Darknet writes it in terms of the output, at random points
    and exactly on the kinks (where the output-based rule decides, e.g. leaky'(0) = .1, stair' = 0 on integers)."""
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.uniform(-6, 6, 400), [-5, -4, -3, -2, -1.5, -1, -.5, 0, .5, 1, 1.5, 2, 3, 4, 5],
                        [-4.0001, -3.9999, 3.9999, 4.0001, -1e-3, 1e-3, .9999, 1.0001]]).astype(np.float32)
    for code, name in enumerate(ACTIVATIONS):
        y = cpu.activate(z.copy(), code)
        np.testing.assert_allclose(y, reference.activate(z.astype(np.float64), name), rtol=1e-6, atol=1e-7,
                                   err_msg=name)
        grad = cpu.gradient(y, code, np.ones_like(y))
        np.testing.assert_allclose(grad, reference.gradient(y.astype(np.float64), name), rtol=1e-6, atol=1e-7,
                                   err_msg=name)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradient_is_the_derivative_away_from_kinks(name):
    """Every one of Darknet's output-based gradients is the true derivative away from the kinks, stair and plse
    included: stair is flat on [2k, 2k+1) and of slope 1 on [2k+1, 2k+2), where its output is not an integer."""
    rng = np.random.default_rng(2)
    z = rng.uniform(-5, 5, 2000)
    z = z[reference.kink_distance(z, name) > 1e-2]
    if name == "tanh":                          # 1 - y*y loses its digits to cancellation in float32 out there
        z = z[np.abs(z) < 3]
    h = 1e-5
    numeric = (reference.activate(z + h, name) - reference.activate(z - h, name)) / (2 * h)
    y = cpu.activate(z.astype(np.float32), ACTIVATIONS.index(name))
    ours = cpu.gradient(y, ACTIVATIONS.index(name), np.ones_like(y))
    np.testing.assert_allclose(ours, numeric, rtol=1e-5, atol=1e-6, err_msg=name)
    check("activation", name, ours, numeric)


# ---- convolutional ------------------------------------------------------------------------------------------

# (id, input (c, h, w), filters, size, stride, cfg padding line, groups, activation, batch_normalize)
CONVOLUTIONS = [
    ("3x3-s1-pad", (3, 5, 7), 4, 3, 1, "pad=1", 1, "leaky", 0),
    ("3x3-s2-pad-bn", (3, 7, 5), 4, 3, 2, "pad=1", 1, "linear", 1),
    ("3x3-nopad-groups2-bn", (4, 5, 5), 6, 3, 1, "padding=0", 2, "logistic", 1),
    ("2x2-s2-odd", (2, 5, 7), 3, 2, 2, "padding=0", 1, "tanh", 0),
    ("5x5-padding2-bn", (2, 5, 7), 3, 5, 1, "padding=2", 1, "linear", 1),
    ("3x3-s3-padding2-groups3", (3, 7, 8), 3, 3, 3, "padding=2", 3, "relie", 0),
    ("1x1-s2-bn", (3, 5, 7), 2, 1, 2, "padding=0", 1, "leaky", 1),
    ("1x1-s1-bn", (3, 5, 7), 4, 1, 1, "padding=0", 1, "leaky", 1),
    ("1x1-s1-groups2", (4, 3, 5), 2, 1, 1, "padding=0", 2, "linear", 0),
    ("3x3-winograd-bn", (3, 5, 7), 4, 3, 1, "pad=1", 1, "leaky", 1),
    ("3x3-winograd-s1-nopad", (2, 6, 5), 3, 3, 1, "padding=0", 1, "linear", 0),
]
# every activation, on a small 3x3 convolution without batch-norm
CONVOLUTIONS += [(f"act-{name}", (2, 4, 3), 2, 3, 1, "pad=1", 1, name, 0) for name in ACTIVATIONS]


@pytest.mark.parametrize("case", CONVOLUTIONS, ids=[c[0] for c in CONVOLUTIONS])
def test_convolutional(tmp_path, monkeypatch, case):
    name, shape, filters, size, stride, padding, groups, activation, bn = case
    if "winograd" in name:                        # the Winograd forward on a tiny input: patch its threshold
        monkeypatch.setenv("PYDARKNET_WINOGRAD_MIN_CHANNELS", "1")
    net = network(tmp_path, f"[convolutional]\nfilters={filters}\nsize={size}\nstride={stride}\n{padding}\n"
                            f"groups={groups}\nactivation={activation}\nbatch_normalize={bn}\n", shape)
    layer = net.layers[0]
    pad = layer.pad
    assert winograd.applies(shape[0], shape[1], shape[2], size, stride, groups) == ("winograd" in name)

    def make(rng):
        x, w, b, s = (draw(rng, (2,) + shape), draw(rng, layer.weights.shape, .5), draw(rng, filters, .3),
                      f32(rng.uniform(.5, 1.5, filters)))
        z = reference.convolution(x[1], w[1], size, stride, pad, groups)
        return (x, w, b, s), reference.normalize(z, s[1], b[1], bn) if well_spread(z, bn) else None

    (x32, x), (w32, w), (b32, b), (s32, s) = away_from_kinks(activation, make)
    layer.weights[...], layer.biases[...] = w32, b32
    if bn:
        layer.scales[...] = s32
    net.weights_changed()
    net.forward(x32.copy())

    def oracle(variant="forward", offset=None):
        return reference.convolutional(x, w, b, size, stride, pad, groups, activation, bn, s, variant, offset)

    check_forward("convolutional", layer.output, oracle())
    (d32, d), dx0 = upstream(np.random.default_rng(3), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)

    # with batch-norm, the input and weight gradients go through the batch statistics as Darknet's backward
    # differentiates them (reference.batchnorm_as_differentiated); the scales' and biases' are exact
    offset = reference.variance_offset(reference.convolution(x, w, size, stride, pad, groups)) if bn else None
    through_stats = lambda: oracle("backward", offset) if bn else oracle()   # noqa: E731
    numeric_x = numerical_gradient(through_stats, x, d)
    if size == 1 and stride == 1 and pad == 0:
        # Darknet's quirk: a 1x1 stride-1 convolution's GEMM has beta 0, so it writes dx instead of adding
        check("convolutional", f"{name} dx (written over)", dx, numeric_x)
        assert relative_error(dx, dx0 + numeric_x) > 10 * TOL
    else:
        check("convolutional", f"{name} dx", dx - dx0, numeric_x)
    check("convolutional", f"{name} weight_updates", layer.weight_updates, numerical_gradient(through_stats, w, d))
    check("convolutional", f"{name} bias_updates", layer.bias_updates, numerical_gradient(oracle, b, d))
    if bn:
        check("convolutional", f"{name} scale_updates", layer.scale_updates, numerical_gradient(oracle, s, d))


def test_first_layer_backward_accepts_no_dx(tmp_path):
    """The first layer's input gradient goes nowhere (dx None): the parameter gradients are the same."""
    net = network(tmp_path, "[convolutional]\nfilters=2\nsize=3\nstride=1\npad=1\nactivation=linear\n", (2, 3, 5))
    x = np.random.default_rng(4).standard_normal((2, 2, 3, 5)).astype(np.float32)
    d = np.random.default_rng(5).standard_normal((2, 2, 3, 5)).astype(np.float32)
    net.forward(x.copy())
    backward(net, 0, d, np.zeros_like(x))
    with_dx = net.layers[0].weight_updates.copy()
    net.layers[0].weight_updates[...] = 0
    net.forward(x.copy())
    backward(net, 0, d, None)
    np.testing.assert_array_equal(net.layers[0].weight_updates, with_dx)


# ---- connected, local, batchnorm ----------------------------------------------------------------------------

@pytest.mark.parametrize("activation,bn,batch", [("leaky", 0, 2), ("logistic", 1, 2), ("linear", 1, 3),
                                                 ("tanh", 1, 4)])
def test_connected(tmp_path, activation, bn, batch):
    shape, outputs = (3, 2, 3), 5
    net = network(tmp_path, f"[connected]\noutput={outputs}\nactivation={activation}\nbatch_normalize={bn}\n",
                  shape, batch)
    layer = net.layers[0]

    def make(rng):
        x, w, b, s = (draw(rng, (batch,) + shape), draw(rng, layer.weights.shape, .5), draw(rng, outputs, .3),
                      f32(rng.uniform(.5, 1.5, outputs)))
        z = (x[1].reshape(batch, -1) @ w[1].T).reshape(batch, -1, 1, 1)
        return (x, w, b, s), reference.normalize(z, s[1], b[1], bn) if well_spread(z, bn) else None

    (x32, x), (w32, w), (b32, b), (s32, s) = away_from_kinks(activation, make)
    layer.weights[...], layer.biases[...] = w32, b32
    if bn:
        layer.scales[...] = s32
    net.forward(x32.copy())

    def oracle(variant="forward", offset=None):
        return reference.connected(x, w, b, activation, bn, s, variant, offset)

    check_forward("connected", layer.output, oracle())
    (d32, d), dx0 = upstream(np.random.default_rng(6), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    offset = reference.variance_offset((x.reshape(batch, -1) @ w.T).reshape(batch, -1, 1, 1)) if bn else None
    through_stats = lambda: oracle("backward", offset) if bn else oracle()   # noqa: E731
    what = f"{activation} bn={bn} batch={batch}"
    check("connected", f"{what} dx", dx - dx0, numerical_gradient(through_stats, x, d))
    check("connected", f"{what} weight_updates", layer.weight_updates, numerical_gradient(through_stats, w, d))
    check("connected", f"{what} bias_updates", layer.bias_updates, numerical_gradient(oracle, b, d))
    if bn:
        check("connected", f"{what} scale_updates", layer.scale_updates, numerical_gradient(oracle, s, d))


# (input (c, h, w), filters, size, stride, pad flag, activation)
LOCALS = [((2, 5, 4), 2, 3, 1, 1, "leaky"), ((2, 5, 6), 3, 3, 2, 0, "logistic"), ((3, 4, 5), 2, 1, 1, 0, "linear"),
          ((2, 7, 5), 2, 3, 2, 1, "tanh")]


LOCAL_IDS = ["3x3-s1-pad-leaky", "3x3-s2-logistic", "1x1-s1-linear", "3x3-s2-pad-tanh"]


@pytest.mark.parametrize("size", [1, 5])
def test_local_pad_needs_size_3(tmp_path, size):
    """With pad=1, Darknet's [local] keeps the input size, which its im2col agrees with only for size 3."""
    with pytest.raises(CfgError, match="pad=1 only with size=3"):
        network(tmp_path, f"[local]\nfilters=2\nsize={size}\nstride=1\npad=1\nactivation=linear\n", (2, 5, 6))


@pytest.mark.parametrize("case", LOCALS, ids=LOCAL_IDS)
def test_local(tmp_path, case):
    shape, filters, size, stride, pad, activation = case
    net = network(tmp_path, f"[local]\nfilters={filters}\nsize={size}\nstride={stride}\npad={pad}\n"
                            f"activation={activation}\n", shape)
    layer = net.layers[0]

    def make(rng):
        x, w, b = draw(rng, (2,) + shape), draw(rng, layer.weights.shape, .5), draw(rng, layer.biases.shape, .3)
        return (x, w, b), reference.local(x[1], w[1], b[1], filters, size, stride, pad, "linear")

    (x32, x), (w32, w), (b32, b) = away_from_kinks(activation, make)
    layer.weights[...], layer.biases[...] = w32, b32
    net.forward(x32.copy())
    oracle = lambda: reference.local(x, w, b, filters, size, stride, pad, activation)   # noqa: E731
    check_forward("local", layer.output, oracle())
    (d32, d), dx0 = upstream(np.random.default_rng(7), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    what = f"{size}x{size}/{stride} pad={pad} {activation}"
    check("local", f"{what} dx", dx - dx0, numerical_gradient(oracle, x, d))
    check("local", f"{what} weight_updates", layer.weight_updates, numerical_gradient(oracle, w, d))
    check("local", f"{what} bias_updates", layer.bias_updates, numerical_gradient(oracle, b, d))


def test_batchnorm_layer(tmp_path):
    shape = (3, 5, 7)
    net = network(tmp_path, "[batchnorm]\n", shape)
    layer = net.layers[0]
    rng = np.random.default_rng(8)
    (x32, x), (s32, s), (b32, b) = draw(rng, (2,) + shape, 2.0), f32(rng.uniform(.5, 1.5, 3)), draw(rng, 3, .3)
    x32 += np.float32([1, -2, .5]).reshape(1, 3, 1, 1)       # channels with a mean of their own
    x = x32.astype(np.float64)
    layer.scales[...], layer.biases[...] = s32, b32
    net.forward(x32.copy())
    check_forward("batchnorm", layer.output, reference.batchnorm(x, s, b))
    (d32, d), dx0 = upstream(rng, layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    offset = reference.variance_offset(x)
    # backward_batchnorm_layer, then Darknet copies its delta over the previous layer's: dx is written over
    check("batchnorm", "dx (written over)",
          dx, numerical_gradient(lambda: reference.batchnorm_as_differentiated(x, s, b, offset), x, d))
    assert relative_error(dx, dx0 + layer.delta) > 10 * TOL
    check("batchnorm", "scale_updates", layer.scale_updates,
          numerical_gradient(lambda: reference.batchnorm(x, s, b), s, d))
    check("batchnorm", "bias_updates", layer.bias_updates,
          numerical_gradient(lambda: reference.batchnorm(x, s, b), b, d))


def test_batchnorm_backward_is_not_the_derivative_of_darknets_forward(tmp_path):
    """Darknet's batch-norm backward differentiates sqrt(var + .00001) and the biased variance, not its forward's
    sqrt(var) + .000001 over the unbiased one. Kept on purpose; on few values per channel the difference shows."""
    shape = (2, 2, 3)
    net = network(tmp_path, "[convolutional]\nfilters=2\nsize=1\nactivation=linear\nbatch_normalize=1\n", shape)
    layer = net.layers[0]
    (x32, x), (d32, d) = draw(np.random.default_rng(9), (2,) + shape), draw(np.random.default_rng(10), (2, 2, 2, 3))
    w, b, s = layer.weights.astype(np.float64), np.zeros(2), np.ones(2)
    net.forward(x32.copy())
    dx = backward(net, 0, d32, np.zeros_like(x32))
    exact = numerical_gradient(lambda: reference.convolutional(x, w, b, 1, 1, 0, 1, "linear", 1, s), x, d)
    assert relative_error(dx, exact) > 10 * TOL
    offset = reference.variance_offset(reference.convolution(x, w, 1, 1, 0))
    check("convolutional", "bn on 12 values per channel, dx", dx, numerical_gradient(
        lambda: reference.convolutional(x, w, b, 1, 1, 0, 1, "linear", 1, s, "backward", offset), x, d))


# ---- pooling ------------------------------------------------------------------------------------------------

def spaced(rng, shape):
    """Values 0.05 apart in random order: no ties, and no perturbation can change a window's maximum."""
    n = int(np.prod(shape))
    return f32((rng.permutation(n) - n / 2).reshape(shape) * .05)


# (input (c, h, w), size, stride, cfg padding line)
MAXPOOLS = [((3, 5, 7), 2, 2, ""), ((2, 5, 7), 3, 1, ""), ((2, 7, 5), 3, 2, "padding=0"), ((2, 5, 6), 2, 1, ""),
            ((2, 6, 7), 3, 2, "padding=3")]


@pytest.mark.parametrize("case", MAXPOOLS, ids=lambda c: f"{c[1]}x{c[1]}-s{c[2]}-{c[3] or 'default'}")
def test_maxpool(tmp_path, case):
    shape, size, stride, padding = case
    net = network(tmp_path, f"[maxpool]\nsize={size}\nstride={stride}\n{padding}\n", shape)
    layer = net.layers[0]
    x32, x = spaced(np.random.default_rng(11), (2,) + shape)
    net.forward(x32.copy())
    oracle = lambda: reference.maxpool(x, size, stride, layer.padding)   # noqa: E731
    check_forward("maxpool", layer.output, oracle())
    (d32, d), dx0 = upstream(np.random.default_rng(12), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    check("maxpool", f"{size}x{size}/{stride} padding {layer.padding} dx", dx - dx0, numerical_gradient(oracle, x, d))



@pytest.mark.parametrize("shape, size, stride, padding", [
    ((3, 8, 10), 2, 2, 1), ((2, 7, 9), 2, 2, 1), ((2, 13, 13), 2, 1, 1), ((2, 9, 8), 3, 2, 2), ((1, 6, 7), 3, 2, 3),
    ((2, 5, 5), 3, 1, 0), ((1, 4, 6), 2, 2, 0)])
def test_maxpool_without_argmax_gives_the_same_values(shape, size, stride, padding):
    """Inference skips the argmax and takes quicker loops; NaN, inf and ties must come out as Darknet's loop has
    them."""
    rng = np.random.default_rng(21)
    x = rng.integers(-3, 3, (2,) + shape).astype(np.float32)      # small integers: many ties
    x.reshape(-1)[rng.choice(x.size, 5, replace=False)] = [np.nan, np.inf, -np.inf, np.nan, -np.inf]
    x[0, 0] = np.nan                                # a plane of NaN: every window gives -FLT_MAX
    out_h, out_w = (shape[1] + padding - size) // stride + 1, (shape[2] + padding - size) // stride + 1
    y_fast, y_full = (np.full((2, shape[0], out_h, out_w), 7, np.float32) for _ in range(2))
    _, argmax = cpu.maxpool_forward(x, size, stride, padding, y_full)
    _, none = cpu.maxpool_forward(x, size, stride, padding, y_fast, with_argmax=False)
    assert none is None
    np.testing.assert_array_equal(y_fast, y_full)
    np.testing.assert_array_equal(y_full, np.float32(reference.maxpool(np.float64(x), size, stride, padding)))
    assert (y_fast[0, 0] == np.float32(-3.4028234663852886e38)).all()

def test_avgpool(tmp_path):
    shape = (3, 5, 7)
    net = network(tmp_path, "[avgpool]\n", shape)
    x32, x = draw(np.random.default_rng(13), (2,) + shape)
    net.forward(x32.copy())
    check_forward("avgpool", net.layers[0].output, reference.avgpool(x))
    (d32, d), dx0 = upstream(np.random.default_rng(14), net.layers[0].output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    check("avgpool", "dx", dx - dx0, numerical_gradient(lambda: reference.avgpool(x), x, d))


# ---- route and shortcut: layers that read earlier layers' outputs ----------------------------------------------

def set_outputs(net, arrays):
    """Write chosen values over earlier layers' outputs (float32), so the layer under test reads them."""
    for i, a in arrays.items():
        net.layers[i].output[...] = a.reshape(net.layers[i].output.shape)


ROUTE_BODY = ("[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n\n"      # 0: (2, 5, 7)
              "[maxpool]\nsize=2\nstride=1\n\n"                                         # 1: (2, 5, 7)
              "[convolutional]\nfilters=3\nsize=1\nactivation=linear\n\n")             # 2: (3, 5, 7)


@pytest.mark.parametrize("layers", ["0,-1", "-3", "-1,0,1"])
def test_route(tmp_path, layers):
    net = network(tmp_path, ROUTE_BODY + f"[route]\nlayers={layers}\n", (2, 5, 7))
    rng = np.random.default_rng(15)
    net.forward(rng.standard_normal((2, 2, 5, 7)).astype(np.float32))
    route = net.layers[3]
    sources = sorted(set(route.layers))
    parts = {i: draw(rng, (2,) + net.layers[i].out_shape) for i in sources}
    set_outputs(net, {i: p[0] for i, p in parts.items()})
    route.forward(layer_input(net, 3), net)
    oracle = lambda: reference.route([parts[i][1] for i in route.layers])   # noqa: E731
    check_forward("route", route.output, oracle())
    before = {i: rng.standard_normal(net.layers[i].delta.shape).astype(np.float32) for i in sources}
    for i in sources:
        net.layers[i].delta[...] = before[i]
    (d32, d), dx0 = upstream(rng, route.output.shape, layer_input(net, 3).shape)
    dx = backward(net, 3, d32, dx0)
    np.testing.assert_array_equal(dx, dx0)      # a route sends its delta to the routed layers, not to dx
    for i in sources:                           # each routed layer's delta gets its slice added (twice if twice)
        check("route", f"layers={layers} delta of layer {i}", net.layers[i].delta - before[i],
              numerical_gradient(oracle, parts[i][1], d))


SHORTCUTS = {
    # name: (cfg body before the shortcut, input, from), shapes of source and previous layer
    "same": ("[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n\n"
             "[convolutional]\nfilters=3\nsize=1\nactivation=linear\n\n", (2, 3, 5), 0),
    "source-larger": ("[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n\n"              # (2, 6, 10)
                      "[convolutional]\nfilters=3\nsize=3\nstride=2\npad=1\nactivation=linear\n\n",   # (3, 3, 5)
                      (2, 6, 10), 0),
    "source-smaller": ("[convolutional]\nfilters=3\nsize=3\nstride=2\npad=1\nactivation=linear\n\n"   # (3, 3, 5)
                       "[upsample]\nstride=2\n\n"                                                      # (3, 6, 10)
                       "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n\n", (2, 6, 10), 0),    # (2, 6, 10)
}


def shortcut_network(tmp_path, kind, activation, alpha, beta, rng):
    body, shape, source = SHORTCUTS[kind]
    net = network(tmp_path, body + f"[shortcut]\nfrom={source}\nactivation={activation}\nalpha={alpha}\n"
                                   f"beta={beta}\n", shape)
    net.forward(rng.standard_normal((2,) + shape).astype(np.float32))
    return net, len(net.layers) - 1, source


def shortcut_case(net, i, source, activation, alpha, beta):
    layer = net.layers[i]

    def make(rng):
        x, add = draw(rng, (2,) + layer.in_shape), draw(rng, (2,) + net.layers[source].out_shape)
        return (x, add), reference.shortcut(x[1], add[1], alpha, beta, "linear")

    (x32, x), (add32, add) = away_from_kinks(activation, make)
    set_outputs(net, {i - 1: x32, source: add32})
    layer.forward(layer_input(net, i), net)
    oracle = lambda: reference.shortcut(x, add, alpha, beta, activation)   # noqa: E731
    check_forward("shortcut", layer.output, oracle())
    rng = np.random.default_rng(16)
    before = rng.standard_normal(net.layers[source].delta.shape).astype(np.float32)
    net.layers[source].delta[...] = before
    (d32, d), dx0 = upstream(rng, layer.output.shape, x.shape)
    dx = backward(net, i, d32, dx0)
    return x, add, d, dx - dx0, net.layers[source].delta - before, oracle


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_shortcut_same_shape_every_activation(tmp_path, activation):
    rng = np.random.default_rng(17)
    net, i, source = shortcut_network(tmp_path, "same", activation, .7, 1.3, rng)
    x, add, d, dx, source_delta, oracle = shortcut_case(net, i, source, activation, .7, 1.3)
    check("shortcut", f"same shape {activation} dx", dx, numerical_gradient(oracle, x, d))
    check("shortcut", f"same shape {activation} source delta", source_delta, numerical_gradient(oracle, add, d))


@pytest.mark.parametrize("kind", ["source-larger", "source-smaller"])
def test_shortcut_different_shapes(tmp_path, kind):
    rng = np.random.default_rng(18)
    net, i, source = shortcut_network(tmp_path, kind, "leaky", 1, .6, rng)
    x, add, d, dx, source_delta, oracle = shortcut_case(net, i, source, "leaky", 1, .6)
    check("shortcut", f"{kind} dx", dx, numerical_gradient(oracle, x, d))
    check("shortcut", f"{kind} source delta", source_delta, numerical_gradient(oracle, add, d))


@pytest.mark.parametrize("kind", ["source-larger", "source-smaller"])
def test_shortcut_different_shapes_scales_all_of_dx_by_alpha(tmp_path, kind):
    """Darknet's quirk: forward multiplies by alpha only where the two shapes overlap, backward_shortcut_layer
    multiplies the whole delta by alpha. The source's gradient is exact."""
    rng = np.random.default_rng(19)
    net, i, source = shortcut_network(tmp_path, kind, "linear", .5, 1.5, rng)
    x, add, d, dx, source_delta, oracle = shortcut_case(net, i, source, "linear", .5, 1.5)
    numeric = numerical_gradient(oracle, x, d)
    overlap = np.zeros(x.shape, bool)
    (_, c1, h1, w1), (_, c2, h2, w2) = add.shape, x.shape
    sample = max(w2 // w1, 1)
    overlap[:, :min(c1, c2), :min(h1, h2) * sample:sample, :min(w1, w2) * sample:sample] = True
    check("shortcut", f"{kind} alpha dx in the overlap", dx[overlap], numeric[overlap])
    check("shortcut", f"{kind} alpha dx outside (alpha times the derivative)", dx[~overlap], .5 * numeric[~overlap])
    check("shortcut", f"{kind} alpha source delta", source_delta, numerical_gradient(oracle, add, d))


# ---- upsample and reorg -------------------------------------------------------------------------------------

# (input (c, h, w), cfg stride, scale)
UPSAMPLES = [((2, 3, 5), 2, 1.0), ((2, 3, 2), 3, .5), ((2, 4, 6), -2, 1.0), ((2, 6, 3), -3, .25)]


@pytest.mark.parametrize("case", UPSAMPLES, ids=lambda c: f"stride{c[1]}-scale{c[2]}")
def test_upsample(tmp_path, case):
    shape, stride, scale = case
    net = network(tmp_path, f"[upsample]\nstride={stride}\nscale={scale}\n", shape)
    layer = net.layers[0]
    x32, x = draw(np.random.default_rng(20), (2,) + shape)
    net.forward(x32.copy())
    oracle = lambda: reference.upsample(x, abs(stride), scale, stride < 0)   # noqa: E731
    check_forward("upsample", layer.output, oracle())
    (d32, d), dx0 = upstream(np.random.default_rng(21), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    numeric = numerical_gradient(oracle, x, d)
    if stride < 0:      # Darknet's backward of the reverse upsample is upsample_cpu(forward=1): it writes dx
        check("upsample", f"reverse stride {-stride} dx (written over)", dx, numeric)
    else:
        check("upsample", f"stride {stride} dx", dx - dx0, numeric)


# (input (c, h, w), stride, reverse)
REORGS = [((4, 4, 6), 2, 0), ((8, 3, 5), 2, 1), ((9, 3, 6), 3, 0), ((4, 2, 3), 2, 1)]


@pytest.mark.parametrize("case", REORGS, ids=lambda c: f"stride{c[1]}-reverse{c[2]}")
def test_reorg(tmp_path, case):
    shape, stride, reverse = case
    net = network(tmp_path, f"[reorg]\nstride={stride}\nreverse={reverse}\n", shape)
    layer = net.layers[0]
    x32, x = draw(np.random.default_rng(22), (2,) + shape)
    net.forward(x32.copy())
    oracle = lambda: reference.reorg(x, stride, reverse)   # noqa: E731
    check_forward("reorg", layer.output, oracle())
    (d32, d), dx0 = upstream(np.random.default_rng(23), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    # reorg_cpu in the other direction, written over dx (a permutation: every value of dx is written)
    check("reorg", f"stride {stride} reverse {reverse} dx (written over)", dx, numerical_gradient(oracle, x, d))


@pytest.mark.parametrize("reverse", [0, 1])
def test_reorg_flatten(tmp_path, reverse):
    shape = (3, 2, 5)
    net = network(tmp_path, f"[reorg]\nflatten=1\nreverse={reverse}\n", shape)
    layer = net.layers[0]
    x32, x = draw(np.random.default_rng(27), (2,) + shape)
    net.forward(x32.copy())
    # forward_reorg_layer with flatten: flatten(output, w*h, c, batch, !reverse); the shape stays (c, h, w)
    oracle = lambda: reference.flatten(x, 10, 3, not reverse).reshape(x.shape)   # noqa: E731
    check_forward("reorg", layer.output, oracle())
    (d32, d), dx0 = upstream(np.random.default_rng(28), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    check("reorg", f"flatten reverse {reverse} dx (written over)", dx, numerical_gradient(oracle, x, d))


# ---- dropout, softmax, cost, crop ---------------------------------------------------------------------------

def test_dropout(tmp_path):
    shape, probability = (3, 5, 7), .3
    net = network(tmp_path, f"[dropout]\nprobability={probability}\n", shape)
    layer = net.layers[0]
    layer.rng = np.random.default_rng(24)
    x32, x = draw(np.random.default_rng(25), (2,) + shape)
    net.forward(x32.copy())            # in place on its input, as Darknet's
    rand = layer.rand.astype(np.float64)
    assert 0 < (rand < probability).mean() < 1
    oracle = lambda: reference.dropout(x, rand, probability)   # noqa: E731
    check_forward("dropout", layer.output, oracle())
    (d32, d), dx0 = upstream(np.random.default_rng(26), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    numeric = numerical_gradient(oracle, x, d)
    # Darknet's dropout shares its delta with the layer before, so what that delta held is masked too
    mask = reference.dropout(np.ones(x.shape), rand, probability)
    check("dropout", "dx (all of it masked)", dx, dx0 * mask + numeric)


@pytest.mark.parametrize("shape,groups,temperature", [((12, 1, 1), 3, .5), ((2, 3, 4), 4, 1.0), ((5, 1, 1), 1, 2.0)])
def test_softmax(tmp_path, shape, groups, temperature):
    net = network(tmp_path, f"[softmax]\ngroups={groups}\ntemperature={temperature}\n", shape)
    layer = net.layers[0]
    x32, x = draw(np.random.default_rng(27), (2,) + shape, 2.0)
    net.forward(x32.copy())
    check_forward("softmax", layer.output, reference.softmax(x, groups, temperature))
    (d32, d), dx0 = upstream(np.random.default_rng(28), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    # backward_softmax_layer adds its delta unchanged: the loss that sets it is taken w.r.t. the logits
    np.testing.assert_allclose(dx, dx0 + d32, rtol=1e-6)


@pytest.mark.parametrize("shape,groups", [((12, 1, 1), 3), ((2, 3, 4), 4)])
def test_softmax_cross_entropy_delta_is_the_negative_gradient(tmp_path, shape, groups):
    """With truth (one class per group), softmax_x_ent_cpu's delta = truth - p is minus the derivative of the
    cross-entropy with respect to the softmax's input."""
    net = network(tmp_path, f"[softmax]\ngroups={groups}\n", shape)
    layer = net.layers[0]
    rng = np.random.default_rng(29)
    x32, x = draw(rng, (2,) + shape, 2.0)
    n = int(np.prod(shape)) // groups
    truth = np.zeros((2, groups, n))
    for b in range(2):
        for g in range(groups):
            truth[b, g, rng.integers(n)] = 1
    net.truth = truth.reshape(2, -1).astype(np.float32)
    net.forward(x32.copy())
    loss, _ = reference.softmax_cross_entropy(reference.softmax(x, groups, 1.0), truth.reshape(x.shape))
    assert layer.cost == pytest.approx(loss.sum(), rel=1e-5)
    xent = lambda: reference.softmax_cross_entropy(reference.softmax(x, groups, 1.0), truth.reshape(x.shape))[0]  # noqa
    check("softmax", "cross-entropy delta", layer.delta, -numerical_gradient(xent, x, np.ones(x.shape)))


@pytest.mark.parametrize("cost_type", ["sse", "L1", "smooth"])
def test_cost(tmp_path, cost_type):
    shape, scale = (2, 3, 4), .5
    net = network(tmp_path, f"[cost]\ntype={cost_type}\nscale={scale}\n", shape)
    layer = net.layers[0]
    rng = np.random.default_rng(30)
    (x32, x), (t32, truth) = draw(rng, (2,) + shape), draw(rng, (2,) + shape)
    x32[0, 0, 0, :2] = t32[0, 0, 0, :2] + np.float32([1.5, -1.5])    # |diff| >= 1 for smooth l1's other branch
    x = x32.astype(np.float64)
    net.truth = t32.reshape(2, -1)
    net.forward(x32.copy())
    error, delta = reference.cost(x, truth, cost_type)
    check_forward("cost", layer.output, error)
    check_forward("cost", layer.delta, delta)
    assert layer.cost == pytest.approx(error.sum(), rel=1e-5)
    if cost_type == "sse":      # l2_cpu's delta = truth - x is minus half the derivative of the squared error
        numeric = numerical_gradient(lambda: reference.cost(x, truth)[0], x, np.ones(x.shape))
        check("cost", "sse delta", layer.delta, -.5 * numeric)
    dx0 = rng.standard_normal(x.shape).astype(np.float32)
    before = layer.delta.copy()
    dx = dx0.copy()
    layer.backward(x32, dx, net)       # backward_cost_layer: dx += scale * delta
    np.testing.assert_allclose(dx, dx0 + np.float32(scale) * before, rtol=1e-6, atol=1e-7)


def test_crop(tmp_path):
    """No gradient flows back through a crop (backward_crop_layer is empty); the forward is checked against every
    crop Darknet could have drawn in training, and against the centred one at inference."""
    shape, out_h, out_w = (3, 7, 9), 5, 6
    net = network(tmp_path, f"[crop]\ncrop_height={out_h}\ncrop_width={out_w}\nflip=1\n", shape)
    layer = net.layers[0]
    x32, x = draw(np.random.default_rng(31), (2,) + shape)
    seen = set()
    for seed in range(12):
        layer.rng = np.random.default_rng(seed)
        net.forward(x32.copy())
        matches = [(dh, dw, flip) for dh in range(shape[1] - out_h + 1) for dw in range(shape[2] - out_w + 1)
                   for flip in (0, 1)
                   if np.allclose(layer.output, reference.crop(x, out_h, out_w, dh, dw, flip, 0), atol=1e-6)]
        assert matches, "the training crop is none of those Darknet can draw"
        seen.update(m[2] for m in matches)
    assert seen == {0, 1}
    (d32, d), dx0 = upstream(np.random.default_rng(32), layer.output.shape, x.shape)
    dx = backward(net, 0, d32, dx0)
    np.testing.assert_array_equal(dx, dx0)
    centred = net.predict(x32.copy())
    check_forward("crop", centred, reference.crop(x, out_h, out_w, (shape[1] - out_h) // 2,
                                                  (shape[2] - out_w) // 2, 0, 0))
