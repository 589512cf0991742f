"""Network: built from cfg sections, a Darknet-short loop over its layers, Darknet's layer table."""
import copy
import os
import sys
import warnings

import numpy as np

from . import backend
from .backend import ops_of, to_host, xp_of
from .box import Detections, DetectionWarning
from .cfg import read_cfg
from .errors import CfgError, DarknetError
from .layers import DARKNET_ONLY, LAYERS
from .layers.base import PARAMETERS, LayerSizeError, memory_limit, planning
from .layers.cost import Cost

POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random")


class Network:
    """A Darknet network: [net] options, the layers in order, `seen`, and the forward pass.

    It is built on the host, then moved to `device` ("cpu" or a GPU index; by default backend.default_device(),
    which reads the build's GPU choice, the command line's and $PYDARKNET_GPU)."""

    def __init__(self, sections, path="<cfg>", device=None):
        self.path = path
        self.sections = sections
        self.train = False
        self.truth = None
        self.cost = None
        self.rng = np.random.default_rng()
        self.seen = 0
        self.weights_header = None
        self.workspace = None
        self.layers = []
        self.warnings = []
        self._output_floats = 0         # the outputs of the layers built so far, for the memory check
        self._read_net_options(sections[0])
        shape = (self.c, self.h, self.w) if self.h and self.w and self.c else (self.inputs, 1, 1)
        for s in sections[1:]:
            layer = self._build_layer(s, shape)
            self.layers.append(layer)
            shape = layer.out_shape
        if not self.layers:
            raise CfgError(f"{path}: the network has no layers after [{sections[0].name}]")
        self.unused = [(s, key, value, line) for s in sections for key, value, line in s.unused()]
        self.device = "cpu"
        self.input = None
        self.to(backend.default_device() if device is None else device)

    def to(self, device):
        """Move the network's parameters to `device` ("cpu" or a GPU index): it runs there from now on.
        One replica per GPU is a copy of the network moved to each."""
        if device != "cpu":
            backend.prepare_gpu(device)
        for layer in self.layers:
            layer.to(device)
        self.device, self.workspace, self.input = device, None, None
        return self

    def _read_net_options(self, s):
        """Darknet's parse_net_options: batch is divided by subdivisions, the learning-rate policy read by name."""
        self.net_section = s
        self.subdivisions = s.int("subdivisions", 1)
        if self.subdivisions <= 0:
            raise s.error(f"must be positive, not {self.subdivisions}", "subdivisions")
        self.time_steps = s.int("time_steps", 1)
        if self.time_steps <= 0:
            raise s.error(f"must be positive, not {self.time_steps}", "time_steps")
        self.batch = max(s.int("batch", 1) // self.subdivisions, 1) * self.time_steps
        self.learning_rate = s.float("learning_rate", .001)
        self.momentum = s.float("momentum", .9)
        self.decay = s.float("decay", .0001)
        self.h, self.w, self.c = s.int("height", 0), s.int("width", 0), s.int("channels", 0)
        for key, value in (("height", self.h), ("width", self.w), ("channels", self.c)):
            if value < 0:
                raise s.error(f"must not be negative, not {value}", key)
        self.inputs = s.int("inputs", self.h * self.w * self.c)
        if not self.inputs and not (self.h and self.w and self.c):
            raise s.error("no input size: give width, height and channels (or inputs)")
        if self.inputs < 0:
            raise s.error(f"must not be negative, not {self.inputs}", "inputs")
        need = (self.h * self.w * self.c if self.h and self.w and self.c else self.inputs) * self.batch * 4
        if need > memory_limit():
            raise s.error(f"the input (batch {self.batch}) needs {need / 2**30:.1f} GiB, more than this machine has")
        self.max_crop = s.int("max_crop", self.w * 2)
        self.min_crop = s.int("min_crop", self.w)
        self.angle = s.float("angle", 0.0)
        self.aspect = s.float("aspect", 1.0)
        self.saturation = s.float("saturation", 1.0)
        self.exposure = s.float("exposure", 1.0)
        self.hue = s.float("hue", 0.0)
        self.random = s.int("random", 0)
        self.adam = s.int("adam", 0)
        self.policy = s.str("policy", "constant")
        if self.policy not in POLICIES:
            raise s.error(f"unknown policy '{self.policy}' (Darknet knows {', '.join(POLICIES)})", "policy")
        self.burn_in = s.int("burn_in", 0)
        self.power = s.float("power", 4.0)
        self.max_batches = s.int("max_batches", 0)
        if self.policy == "step":
            self.step, self.scale = s.int("step", 1), s.float("scale", 1.0)
        elif self.policy == "steps":
            self.steps, self.scales = s.ints("steps", []), s.floats("scales", [])
            if len(self.steps) != len(self.scales):
                raise s.error(f"{len(self.steps)} steps but {len(self.scales)} scales", "scales")
        elif self.policy == "exp":
            self.gamma = s.float("gamma", 1.0)
        elif self.policy == "sigmoid":
            self.gamma, self.step = s.float("gamma", 1.0), s.int("step", 1)

    def _build_layer(self, s, shape):
        index = len(self.layers)
        cls = LAYERS.get(s.name)
        if cls is None:
            if s.name in DARKNET_ONLY:
                raise CfgError(f"{s.path}:{s.line}: layer {index} [{s.name}] is a Darknet layer type that "
                               f"pydarknet does not support yet")
            raise CfgError(f"{s.path}:{s.line}: layer {index} has unknown type [{s.name}] "
                           f"(not a pjreddie Darknet layer; YOLOv4 layers such as [sam] are not supported)")
        try:
            with planning() as plan:        # a dry run: shapes and parameter counts, nothing allocated
                layer = cls.from_cfg(s, shape, self)
            self._check_size(s, index, layer, plan.floats)
            layer = cls.from_cfg(s, shape, self)
        except LayerSizeError as e:
            raise CfgError(f"{s.path}:{s.line}: layer {index} [{s.name}]: {e}") from None
        layer.section, layer.index = s, index
        # options Darknet reads for every layer: a factor on the learning rate, and where backward stops
        layer.learning_rate_scale = s.float("learning_rate", 1.0)
        layer.stopbackward = s.int("stopbackward", 0)
        layer.onlyforward = s.int("onlyforward", 0)
        return layer

    def _check_size(self, s, index, layer, params):
        """Refuse a layer whose output, weights or workspace (or the outputs so far with it) exceed memory."""
        c, h, w = layer.out_shape
        if min(c, h, w) <= 0:
            raise LayerSizeError(f"its output would be {w} x {h} x {c}: the input is too small for this size/stride")
        limit = memory_limit()
        output = layer.outputs * self.batch
        if output * 4 > limit:
            raise LayerSizeError(f"its output ({w} x {h} x {c}, batch {self.batch}) needs {output * 4 / 2**30:.1f} "
                                 f"GiB, more than this machine has")
        if params * 4 > limit:
            raise LayerSizeError(f"its {params:,} weights need {params * 4 / 2**30:.1f} GiB, "
                                 f"more than this machine has")
        workspace = layer.workspace_size() if hasattr(layer, "workspace_size") else 0
        if workspace * 4 > limit:
            raise LayerSizeError(f"its im2col workspace needs {workspace * 4 / 2**30:.1f} GiB, "
                                 f"more than this machine has")
        self._output_floats += output
        workspace = max([workspace] + [other.workspace_size() for other in self.layers
                                       if hasattr(other, "workspace_size")])
        total = self._output_floats + params + workspace
        if total * 4 > limit:
            raise LayerSizeError(f"with it the outputs of layers 0-{index} (batch {self.batch}), its weights and the "
                                 f"workspace need {total * 4 / 2**30:.1f} GiB, more than this machine has")

    # ---- Darknet's table -------------------------------------------------------------------------------------

    def summary(self):
        """The layer table Darknet prints while it parses a cfg."""
        lines = ["layer     filters    size              input                output"]
        lines += [f"{i:5d} {layer.describe()}" for i, layer in enumerate(self.layers)]
        return "\n".join(lines)

    __str__ = summary

    def report_unused(self, file=sys.stderr):
        """Darknet's "Unused field" notes, once per key, naming the file and line."""
        for s, key, value, line in self.unused:
            print(f"{s.path}:{line}: Unused field: '{key} = {value}' in [{s.name}]", file=file)

    # ---- forward ---------------------------------------------------------------------------------------------

    @property
    def output_layer(self):
        """The last layer that is not a cost layer: its output is the network's (get_network_output_layer)."""
        for layer in reversed(self.layers):
            if not isinstance(layer, Cost):
                return layer
        return self.layers[-1]

    @property
    def input_shape(self):
        return (self.c, self.h, self.w) if self.h and self.w and self.c else (self.inputs, 1, 1)

    def _workspace(self, like):
        if self.device != "cpu":
            return None         # the GPU backend takes its buffers from CuPy's memory pool
        batch = like.shape[0]
        size = max((layer.workspace_size(batch) for layer in self.layers if hasattr(layer, "workspace_size")),
                   default=0)
        if self.workspace is None or self.workspace.size < size or xp_of(self.workspace) is not xp_of(like):
            self.workspace = xp_of(like).empty(max(size, 1), np.float32)
        return self.workspace

    def forward(self, x):
        """Run every layer on x (B, C, H, W) float32 (host or device); returns the output layer's output, on the
        network's device."""
        with backend.on_device(self.device):
            x = self._as_input(x)
            self._workspace(x)
            self.input = x
            for layer in self.layers:
                if self.train:
                    layer.zero_delta(x.shape[0])
                x = layer.forward(x.reshape((x.shape[0],) + layer.in_shape), self)
            if self.train:
                self.cost = self._cost()
            return self.output_layer.output

    def _cost(self):
        """calc_network_cost: the mean of the costs of the layers that have one."""
        costs = [layer.cost for layer in self.layers if getattr(layer, "cost", None) is not None]
        return float(np.mean(np.float32(costs), dtype=np.float32)) if costs else None

    def backward(self):
        """backward_network: from the last layer to the first, each adds its input gradient into the previous
        layer's delta (the first layer's goes nowhere)."""
        with backend.on_device(self.device):
            self._backward()

    def _backward(self):
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            if layer.stopbackward:
                break
            if layer.delta is not None:
                ops_of(layer.delta).flush(layer.delta)
            if i == 0:
                x, dx = self.input, None
            else:
                previous = self.layers[i - 1]
                x, dx = previous.output, previous.delta
            layer.backward(x.reshape((x.shape[0],) + layer.in_shape), dx, self)

    def current_batch(self):
        """get_current_batch: images seen / (batch * subdivisions)."""
        return self.seen // (self.batch * self.subdivisions)

    def current_rate(self):
        """get_current_rate: burn-in, then the cfg's learning-rate policy, in float32 as Darknet computes it."""
        n = self.current_batch()
        base = np.float32(self.learning_rate)
        if n < self.burn_in:
            return float(base * np.float32(np.float32(n / self.burn_in) ** np.float32(self.power)))
        if self.policy == "step":
            return float(base * np.float32(self.scale) ** (n // self.step))
        if self.policy == "steps":
            rate = base
            for step, scale in zip(self.steps, self.scales):
                if step > n:
                    break
                rate = np.float32(rate * np.float32(scale))
            return float(rate)
        if self.policy == "exp":
            return float(base * np.float32(self.gamma) ** n)
        if self.policy == "poly":
            return float(base * np.float32(1 - np.float32(n / self.max_batches)) ** np.float32(self.power))
        if self.policy == "random":
            return float(base * np.float32(self.rng.random()) ** np.float32(self.power))
        if self.policy == "sigmoid":
            return float(base * np.float32(1.0 / (1.0 + np.exp(self.gamma * (n - self.step)))))
        return float(base)

    def train_datum(self, x, truth):
        """train_network_datum: count the images, forward and backward in training mode, update at the end of
        each group of `subdivisions` batches; returns the cost."""
        self.seen += x.shape[0]
        self.truth = np.ascontiguousarray(truth, np.float32).reshape(x.shape[0], -1)
        self.train = True
        self.forward(x)
        self.backward()
        if (self.seen // self.batch) % self.subdivisions == 0:
            self.update()
        return self.cost

    def update(self):
        """update_network: one SGD step of every layer at the current learning rate."""
        rate = self.current_rate()
        batch = self.batch * self.subdivisions
        with backend.on_device(self.device):
            for layer in self.layers:
                if not layer.onlyforward:
                    layer.update(self, rate, self.momentum, self.decay, batch)
        self.weights_changed()

    def _as_input(self, x):
        x = backend.move(x, self.device)
        x = xp_of(x).ascontiguousarray(x, dtype=np.float32)
        shape = self.input_shape
        if x.ndim == 3 or x.ndim == 1:
            x = x.reshape((1,) + shape)
        elif x.ndim == 2:
            x = x.reshape((x.shape[0],) + shape)
        if x.shape[1:] != shape:
            c, h, w = shape
            raise ValueError(f"network input must be {c} x {h} x {w} (C x H x W), got {x.shape[1:]}")
        return x

    def predict(self, x):
        """network_predict: inference on one image (C, H, W) or a batch (B, C, H, W)."""
        single = np.ndim(x) in (1, 3)
        train, self.train = self.train, False
        try:
            out = self.forward(x)
        finally:
            self.train = train
        return out[0] if single else out

    def detections(self, img_w, img_h, thresh, hier=.5, relative=True, batch_index=0):
        """get_network_boxes: the detection records of every yolo/region/detection layer, in layer order."""
        with np.errstate(over="ignore", invalid="ignore"):     # reported below, once, as a count
            parts = [layer.detections(self, batch_index, img_w, img_h, thresh, relative)
                     for layer in self.layers if hasattr(layer, "detections")]
        dets, dropped = Detections.concat(parts).finite()
        if dropped:
            warnings.warn(DetectionWarning(self.path, dropped, dropped + len(dets)), stacklevel=2)
        return dets

    def layer_output(self, i):
        """Layer i's output as a host array in Darknet's memory order."""
        return to_host(self.layers[i].output)

    # ---- weights ---------------------------------------------------------------------------------------------

    def init_random(self, seed=None):
        """Darknet's initialisation of a new network: random weights, zero biases, batch-norm scales 1."""
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            if hasattr(layer, "init_random"):
                layer.init_random(rng)
        return self.weights_changed()

    def resize(self, w, h):
        """resize_network: the same layers and parameters at a new input size (random multi-scale training)."""
        if (w, h) == (self.w, self.h):
            return self
        net_section = copy.copy(self.sections[0])
        net_section.options = dict(net_section.options, width=str(w), height=str(h))
        resized = Network([net_section] + self.sections[1:], self.path, device=self.device)
        for old, new in zip(self.layers, resized.layers):
            for name in PARAMETERS:
                if hasattr(old, name):
                    value = getattr(old, name)
                    if hasattr(new, name) and getattr(new, name) is not None and value is not None \
                            and getattr(new, name).shape != value.shape:
                        raise DarknetError(f"{self.path}: layer {old.index} ({old.type}) cannot be resized: its "
                                           f"parameters depend on the input size")
                    setattr(new, name, value)
            new.learning_rate_scale = old.learning_rate_scale
        self.layers = resized.layers
        self.w, self.h, self.inputs = w, h, resized.inputs
        self.workspace = None
        return self.weights_changed()

    def weights_changed(self):
        """Tell the layers that their parameters were written in place (they drop derived forms of them)."""
        for layer in self.layers:
            if hasattr(layer, "weights_changed"):
                layer.weights_changed()
        return self


def parse_network_cfg(path):
    """Read a .cfg into a Network with Darknet's initial weights (libdarknet's parse_network_cfg)."""
    path = os.fsdecode(path)
    return Network(read_cfg(path), path).init_random()
