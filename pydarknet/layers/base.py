"""What every layer has: shapes, an output buffer reused across calls, file weights, a line of Darknet's table."""
import contextlib
import os
import threading

import numpy as np

from ..activations import ACTIVATIONS
from ..backend import array_module, move, ops_of, to_device, xp_of


class LayerSizeError(Exception):
    """A layer too large for this machine or with an empty output; the network adds the cfg location."""


def memory_limit():
    """Bytes of memory this process may reasonably use: the machine's available memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class MemoryBudget:
    """The memory rule, in one place: a network's input, each layer's output (times the batch), weights and im2col
    workspace, and the outputs so far with the layer's weights and the largest workspace, must each fit in
    memory_limit(). A layer is checked before each of its parameter arrays is allocated (Layer.param, while the
    network builds it inside `building`) and once more when it is built; `add` then counts it in."""

    def __init__(self, batch):
        self.batch = batch
        self.limit = memory_limit()
        self.outputs = 0        # floats: the outputs of the layers counted in so far
        self.workspace = 0      # floats: the largest workspace among them
        self.weights = 0        # floats: the parameters of the layer being built
        self.layers = 0         # how many layers are counted in: the index of the one being built

    def check_input(self, s, floats):
        """The network's input, `floats` per image: refused as an error of the [net] section `s`."""
        need = floats * self.batch * 4
        if need > self.limit:
            raise s.error(f"the input (batch {self.batch}) needs {need / 2**30:.1f} GiB, more than this machine has")

    def check(self, layer, weights, array=0):
        """Refuse (LayerSizeError) a layer whose output is empty, or whose next parameter array (`array` floats),
        output, `weights` floats of parameters or workspace (or the outputs so far with them) exceed memory."""
        c, h, w = layer.out_shape
        if min(c, h, w) <= 0:
            raise LayerSizeError(f"its output would be {w} x {h} x {c}: the input is too small for this size/stride")
        if array * 4 > self.limit:
            raise LayerSizeError(f"its {array:,} weights ({array * 4 / 2**30:.1f} GiB) do not fit in memory")
        output = layer.outputs * self.batch
        if output * 4 > self.limit:
            raise LayerSizeError(f"its output ({w} x {h} x {c}, batch {self.batch}) needs {output * 4 / 2**30:.1f} "
                                 f"GiB, more than this machine has")
        if weights * 4 > self.limit:
            raise LayerSizeError(f"its {weights:,} weights need {weights * 4 / 2**30:.1f} GiB, "
                                 f"more than this machine has")
        workspace = layer.workspace_size() if hasattr(layer, "workspace_size") else 0
        if workspace * 4 > self.limit:
            raise LayerSizeError(f"its im2col workspace needs {workspace * 4 / 2**30:.1f} GiB, "
                                 f"more than this machine has")
        total = self.outputs + output + weights + max(self.workspace, workspace)
        if total * 4 > self.limit:
            raise LayerSizeError(f"with it the outputs of layers 0-{self.layers} (batch {self.batch}), its weights and "
                                 f"the workspace need {total * 4 / 2**30:.1f} GiB, more than this machine has")
        return workspace

    def claim(self, layer, floats):
        """A parameter array of `floats` for the layer being built: checked with the layer's others before it is
        allocated."""
        self.check(layer, self.weights + floats, floats)
        self.weights += floats

    def add(self, layer):
        """The layer is built: check it whole, count its output and workspace in, start the next one."""
        workspace = self.check(layer, self.weights)
        self.outputs += layer.outputs * self.batch
        self.workspace = max(self.workspace, workspace)
        self.weights = 0
        self.layers += 1


_building = threading.local()


@contextlib.contextmanager
def building(memory):
    """Within it, Layer.param claims its arrays from `memory` (a MemoryBudget) before allocating them."""
    outer, _building.memory = getattr(_building, "memory", None), memory
    try:
        yield memory
    finally:
        _building.memory = outer


# What a layer learns or accumulates: moved with it between devices, carried over when the network is resized.
PARAMETERS = ("weights", "biases", "scales", "rolling_mean", "rolling_variance", "weight_updates", "bias_updates",
              "scale_updates")
# What a forward or backward pass leaves behind for the next; dropped when the layer moves (made again there).
PASS_STATE = ("output", "delta", "x", "x_norm", "mean", "variance", "argmax", "rand")


class Layer:
    """A layer with an input shape (c, h, w), an output shape, and a forward pass; no weights unless it says so."""

    type = "layer"          # Darknet's get_layer_string, as its summaries name the layer
    host_delta = False      # the loss heads compute their delta on the host, as Darknet's GPU build does
    xp = np                 # the array module of the layer's device

    def __init__(self, in_shape):
        self.in_shape = tuple(int(v) for v in in_shape)
        self.out_shape = self.in_shape
        self.output = None
        self.section = None     # the cfg Section it was built from, for messages
        self.index = None
        self.delta = None
        self.cost = None
        self.learning_rate_scale = 1.0   # [section] learning_rate=, a factor on the network's rate

    @property
    def output(self):
        """The last pass's output. One that a fused pass did not write (Network.fused_pools) is made from that
        pass's input when first read, so that whoever reads it finds Darknet's values."""
        unmade = self.__dict__.get("_unmade")
        if unmade is not None:
            self._unmade = None
            self.make_output(*unmade)
        return self._output

    @output.setter
    def output(self, value):
        self._output, self._unmade = value, None

    @property
    def inputs(self):
        c, h, w = self.in_shape
        return c * h * w

    @property
    def outputs(self):
        c, h, w = self.out_shape
        return c * h * w

    def darknet_out_shape(self):
        """(out_c, out_h, out_w) as Darknet's struct holds them (some layer types leave them 0)."""
        return self.out_shape

    def darknet_lwhc(self):
        """Darknet's own l.w, l.h, l.c fields."""
        c, h, w = self.in_shape
        return w, h, c

    def describe(self):
        """The rest of Darknet's layer-table line after the index."""
        return self.type

    def weight_arrays(self):
        """Parameter arrays in the order a .weights file holds them."""
        return []

    @property
    def file_floats(self):
        return sum(a.size for a in self.weight_arrays())

    @property
    def nweights(self):
        return 0

    @property
    def bflops(self):
        return None

    def forward(self, x, net):
        raise NotImplementedError

    def param(self, shape, fill=0.0):
        """A float32 parameter array, refused with a clear error when the layer's shape makes it absurd (by the
        network's MemoryBudget while it builds the layer, else by one of batch 1)."""
        memory = getattr(_building, "memory", None) or MemoryBudget(1)
        memory.claim(self, int(np.prod(shape, dtype=np.float64)))
        if fill == 0:
            return np.zeros(shape, np.float32)      # calloc: the pages are zeroed when first written
        return np.full(shape, fill, np.float32)

    def backward(self, x, dx, net):
        """Add this layer's gradient with respect to its input x into dx (None for the first layer); Darknet's
        backward pass also leaves the parameter gradients in *_updates."""
        raise NotImplementedError(f"layer {self.index} ({self.type}) has no backward pass yet")

    def add_delta_to(self, dx):
        """The loss heads' backward (Darknet's axpy of l.delta into net.delta): their delta already is the
        gradient at their input."""
        if dx is not None:
            dx += to_device(self.delta.reshape(dx.shape), dx)

    def update(self, net, rate, momentum, decay, batch):
        """SGD step on the layer's parameters (layers without parameters have nothing to do)."""

    def inference_cost(self, net):
        """A loss head's cost on the output of an inference pass, against net.truth (the validation loss): its
        training loss arithmetic (`loss`, which fills its own delta); None for a layer without one."""
        if not hasattr(self, "loss"):
            return None
        self.zero_delta(self.output.shape[0])
        return self.loss(net)

    def zero_delta(self, batch):
        """Darknet's forward_network zeroes every layer's delta before the layer runs."""
        shape = (batch,) + self.out_shape
        if getattr(self, "delta", None) is None or self.delta.shape != shape:
            self.delta = (np if self.host_delta else self.xp).zeros(shape, np.float32)
        else:
            ops_of(self.delta).zero(self.delta)
        return self.delta

    def new_output(self, batch, shape=None):
        """The output buffer for this batch size, reused from the previous call when the shape is unchanged."""
        shape = (batch,) + tuple(shape or self.out_shape)
        if self.output is None or self.output.shape != shape:
            self.output = self.xp.empty(shape, np.float32)
        return self.output

    def to(self, device):
        """Move the parameters to `device` ("cpu" or a GPU index); what the last pass left behind is dropped."""
        for name in PARAMETERS:
            if getattr(self, name, None) is not None:
                setattr(self, name, move(getattr(self, name), device))
        self._unmade = None     # an output a fused pass skipped is not made on the way out
        for name in PASS_STATE:
            if getattr(self, name, None) is not None:
                setattr(self, name, None)
        self.xp = array_module(device)
        if hasattr(self, "weights_changed"):
            self.weights_changed()


def inference_epilogue(layer, activation):
    """What normalize_bias_activate does at inference, as convolution_forward's `epilogue` takes it: (biases,
    activation, scales, mean, variance), the last three None without batch-norm."""
    if not getattr(layer, "batch_normalize", True):
        return layer.biases, activation, None, None, None
    return layer.biases, activation, layer.scales, layer.rolling_mean, layer.rolling_variance


def normalize_bias_activate(layer, y, net, activation):
    """Darknet's batch-norm (batch statistics in training, rolling ones at inference), bias and activation, in place.

    In training the rolling averages move as Darknet moves them: .99 old + .01 new.
    """
    ops = ops_of(y)
    if not getattr(layer, "batch_normalize", True):
        return ops.bias_activate(y, layer.biases, activation)
    if not net.train:
        return ops.bias_activate(y, layer.biases, activation, layer.scales, layer.rolling_mean,
                                 layer.rolling_variance)
    # synchronised batch-norm where the network has replicas: the statistics of every replica's images
    layer.mean, layer.variance = ops.batch_stats(y, getattr(net, "replicas", None))
    for rolling, batch_value in ((layer.rolling_mean, layer.mean), (layer.rolling_variance, layer.variance)):
        rolling *= np.float32(.99)
        rolling += np.float32(.01) * batch_value
    # l.x and l.x_norm of Darknet, kept for the backward pass
    layer.x, layer.x_norm = ops.batchnorm_train(y, layer.mean, layer.variance, layer.scales, layer.biases,
                                                activation, getattr(layer, "x", None), getattr(layer, "x_norm", None))
    return y


def backward_normalize_bias(layer, net):
    """Darknet's backward_bias, or backward_batchnorm_layer, on layer.delta (already times the activation's
    gradient): bias and scale updates accumulate, and delta becomes the gradient of the pre-normalisation output.

    Darknet's quirk is kept: forward divides by sqrt(var) + .000001, backward by sqrt(var + .00001).
    """
    ops = ops_of(layer.delta)
    if not getattr(layer, "batch_normalize", False):
        return ops.batchnorm_backward(layer.delta, None, None, None, None, None, layer.bias_updates, None)
    mean, variance = (layer.mean, layer.variance) if net.train else (layer.rolling_mean, layer.rolling_variance)
    return ops.batchnorm_backward(layer.delta, layer.x, layer.x_norm, mean, variance, layer.scales,
                                  layer.bias_updates, layer.scale_updates,
                                  getattr(net, "replicas", None) if net.train else None)


def sgd_update(layer, rate, momentum, decay, batch):
    """Darknet's update_convolutional_layer (and connected, local): biases and scales step along their
    accumulated updates, weights along theirs after weight decay; then momentum scales what is kept."""
    ensure_updates(layer)       # a layer behind stopbackward=1 never ran backward: its updates are still zero
    rate = np.float32(rate * layer.learning_rate_scale)
    step, keep = np.float32(rate / batch), np.float32(momentum)
    layer.biases += step * layer.bias_updates
    layer.bias_updates *= keep
    if getattr(layer, "batch_normalize", False):
        layer.scales += step * layer.scale_updates
        layer.scale_updates *= keep
    layer.weight_updates += np.float32(-decay * batch) * layer.weights
    layer.weights += step * layer.weight_updates
    layer.weight_updates *= keep
    for kept in (layer.weight_updates, layer.bias_updates):   # momentum decays them towards denormals
        ops_of(kept).flush(kept)


def ensure_updates(layer):
    """The *_updates accumulators (Darknet allocates them with the layer; here on the first backward pass)."""
    if getattr(layer, "bias_updates", None) is None:
        xp = xp_of(layer.biases)
        layer.bias_updates = xp.zeros_like(layer.biases)
        if hasattr(layer, "weights"):
            layer.weight_updates = xp.zeros_like(layer.weights)
        if hasattr(layer, "scales"):
            layer.scale_updates = xp.zeros_like(layer.scales)


def activation_code(section, default):
    """The activation named in the section, as the index the kernels use; an unknown name is a cfg error."""
    name = section.str("activation", default)
    if name not in ACTIVATIONS:
        raise section.error(f"unknown activation '{name}' (Darknet knows {', '.join(ACTIVATIONS)})",
                            "activation")
    return ACTIVATIONS.index(name)


def positive(section, key, value):
    if value <= 0:
        raise section.error(f"must be positive, not {value}", key)
    return value
