"""Network: built from cfg sections, a Darknet-short loop over its layers, Darknet's layer table; load_network
(network.c's), and the `partial` and `randweights` commands' bodies."""
import contextlib
import copy
import os
import sys
import warnings

import numpy as np

from . import backend
from .backend import ops_of, to_host, xp_of
from .backend.cpu import threads as cpu_threads
from .box import Detections, DetectionWarning
from .cfg import read_cfg
from .errors import CfgError, DarknetError, WeightsError
from .layers import DARKNET_ONLY, LAYERS
from .layers.base import PARAMETERS, LayerSizeError, MemoryBudget, building
from .layers.cost import Cost
from .policy import NetOptions
from .weights import covers_every_layer, load_weights, sane_random_weights, save_weights


class Network(NetOptions):
    """A Darknet network: [net] options (policy.py: NetOptions, with the learning-rate policy), the layers in order,
    `seen`, and the forward pass.

    It is built on the host, then moved to `device` ("cpu" or a GPU index; by default backend.default_device(),
    which reads the build's GPU choice, the command line's and $PYDARKNET_GPU)."""

    def __init__(self, sections, path="<cfg>", device=None):
        self.path = path
        self.sections = sections
        self.train = False
        # True where the network will run once on these weights (the detect verb on one image): the layers then
        # keep nothing derived from their weights, and 3x3 convolutions skip Winograd, whose filter transform
        # (35-50 ms and 75-335 MB on yolov3-tiny and yolov3) only pays when it is used again
        self.one_pass = False
        self.truth = None
        self.cost = None
        self.rng = np.random.default_rng()
        self.seen = 0
        # the replicas this one trains with under `-sync allreduce` (parallel/replicas.py's AllreduceSync): their
        # images count in `seen`, their updates and batch-norm statistics are summed with this one's
        self.replicas = None
        self.weights_header = None
        self.workspace = None
        self.layers = []
        self.warnings = []
        self.read_net_options(sections[0])
        memory = MemoryBudget(self.batch)   # checks each layer before it allocates
        shape = self.input_shape
        for s in sections[1:]:
            layer = self._build_layer(s, shape, memory)
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

    def _build_layer(self, s, shape, memory):
        index = len(self.layers)
        cls = LAYERS.get(s.name)
        if cls is None:
            if s.name in DARKNET_ONLY:
                raise CfgError(f"{s.path}:{s.line}: layer {index} [{s.name}] is a Darknet layer type that "
                               f"pydarknet does not support yet")
            raise CfgError(f"{s.path}:{s.line}: layer {index} has unknown type [{s.name}] "
                           f"(not a pjreddie Darknet layer; YOLOv4 layers such as [sam] are not supported)")
        try:
            with building(memory):          # each parameter array is checked before it is allocated
                layer = cls.from_cfg(s, shape, self)
            memory.add(layer)               # and the layer whole: its output, workspace, the outputs so far
        except LayerSizeError as e:
            raise CfgError(f"{s.path}:{s.line}: layer {index} [{s.name}]: {e}") from None
        layer.section, layer.index = s, index
        # options Darknet reads for every layer: a factor on the learning rate, and where backward stops
        layer.learning_rate_scale = s.float("learning_rate", 1.0)
        layer.stopbackward = s.int("stopbackward", 0)
        layer.onlyforward = s.int("onlyforward", 0)
        return layer

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

    def _workspace(self, like):
        if self.device != "cpu":
            return None         # the GPU backend takes its buffers from CuPy's memory pool
        batch = like.shape[0]
        size = max((layer.workspace_size(batch, self.train) for layer in self.layers
                    if hasattr(layer, "workspace_size")), default=0)
        if self.workspace is None or self.workspace.size < size or xp_of(self.workspace) is not xp_of(like):
            self.workspace = xp_of(like).empty(max(size, 1), np.float32)
        return self.workspace

    def forward(self, x, fuse=False):
        """Run every layer on x (B, C, H, W) float32 (host or device); returns the output layer's output, on the
        network's device. `fuse` (inference): each convolution that fused_pools names runs with the [maxpool]
        after it in one pass; its own output is made only if somebody reads it (Layer.output)."""
        with backend.on_device(self.device):
            x = self._as_input(x)
            self._workspace(x)
            self.input = x
            pools = self.fused_pools() if fuse and not self.train else ()
            i = 0
            while i < len(self.layers):
                layer = self.layers[i]
                if self.train:
                    layer.zero_delta(x.shape[0])
                x = x.reshape((x.shape[0],) + layer.in_shape)
                if i in pools:
                    x = layer.forward_pooled(x, self, self.layers[i + 1])
                    i += 2
                    continue
                x = layer.forward(x, self)
                i += 1
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

    def train_datum(self, x, truth):
        """train_network_datum: count the images, forward and backward in training mode, update at the end of
        each group of `subdivisions` batches; returns the cost."""
        self.seen += x.shape[0] * (1 if self.replicas is None else self.replicas.size)
        self.truth = np.ascontiguousarray(truth, np.float32).reshape(x.shape[0], -1)
        self.train = True
        # float32 overflow gives inf and NaN silently, as in C: a run that diverges gets one line from the
        # trainer (the non-finite loss), not numpy's warnings on the way
        with np.errstate(over="ignore", invalid="ignore"):
            self.forward(x)
            self.backward()
            if (self.seen // self.batch) % self.subdivisions == 0:
                self.update()
        return self.cost

    def validation_cost(self, x, truth):
        """The cost of images x against `truth` in inference mode (rolling statistics, no dropout, nothing
        updated): each loss head's training arithmetic on the inference outputs, their mean as calc_network_cost
        takes it (a sum over the images: divide by their count for the loss per image, as training prints it)."""
        train, self.train = self.train, False
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                self.forward(x)
                self.truth = np.ascontiguousarray(truth, np.float32).reshape(x.shape[0], -1)
                costs = [layer.inference_cost(self) for layer in self.layers]
        finally:
            self.train = train
        costs = [cost for cost in costs if cost is not None]
        return float(np.mean(np.float32(costs), dtype=np.float32)) if costs else None

    def update(self):
        """update_network: one SGD step of every layer at the current learning rate."""
        rate = self.current_rate()
        batch = self.batch * self.subdivisions
        with backend.on_device(self.device):
            if self.replicas is not None:
                self.replicas.sum_updates(self)
            for layer in self.layers:
                if not layer.onlyforward:
                    layer.update(self, rate, self.momentum, self.decay, batch)
        self.weights_changed()

    @property
    def replica_batch(self):
        """The images this process trains on per minibatch: net.batch, or its share of it on each replica."""
        return self.batch if self.replicas is None else self.batch // self.replicas.size

    def _as_input(self, x):
        x = backend.move(x, self.device)
        x = xp_of(x).ascontiguousarray(x, dtype=np.float32)
        shape = self.input_shape
        c, h, w = shape
        size = c * h * w
        fits = (x.shape == shape if x.ndim == 3 else x.shape[1:] == shape if x.ndim == 4 else
                x.size == size if x.ndim == 1 else x.ndim == 2 and x.shape[1] == size)
        if not fits:
            raise DarknetError(f"{self.path}: the network takes {c} x {h} x {w} (C x H x W, float32; resize or "
                               f"letterbox_image first), got an array of shape {tuple(x.shape)}")
        return x.reshape((-1,) + shape)

    def fused_pools(self):
        """The convolutions that predict runs with the [maxpool] after it in one pass (no layer but that maxpool
        reads their output; 2x2 stride-2 windows inside an even-sized output): yolov3-tiny's first ones, whose
        large outputs then never reach memory."""
        read = {i for layer in self.layers for i in
                (layer.layers if layer.type == "route" else [layer.source] if layer.type == "shortcut" else [])}
        return {i for i, (layer, pool) in enumerate(zip(self.layers, self.layers[1:]))
                if hasattr(layer, "forward_pooled") and pool.type == "maxpool" and pool.size == 2 and
                pool.stride == 2 and pool.padding in (0, 1) and layer.out_shape[1] % 2 == 0 and
                layer.out_shape[2] % 2 == 0 and i not in read}

    def predict(self, x, fuse=True):
        """network_predict: inference on one image (C, H, W) or a batch (B, C, H, W), with the fused passes of
        fused_pools (`fuse`); every layer's output still reads as Darknet's."""
        single = np.ndim(x) in (1, 3)
        train, self.train = self.train, False
        try:
            with cpu_threads.inference_pass():
                out = self.forward(x, fuse)
        finally:
            self.train = train
        return out[0] if single else out

    def detections(self, img_w, img_h, thresh, hier=.5, relative=True, batch_index=0, heads=None):
        """get_network_boxes: the detection records of every yolo/region/detection layer, in layer order (or of
        `heads`, copies of them holding an earlier pass's outputs: `head_snapshot`)."""
        with np.errstate(over="ignore", invalid="ignore"):     # reported below, once, as a count
            parts = [layer.detections(self, batch_index, img_w, img_h, thresh, relative)
                     for layer in (self.layers if heads is None else heads) if hasattr(layer, "detections")]
        dets, dropped = Detections.concat(parts).finite()
        if dropped:
            warnings.warn(DetectionWarning(self.path, dropped, dropped + len(dets)), stacklevel=2)
        return dets

    def head_snapshot(self):
        """Shallow copies of the detection layers, each holding a host copy of its output: what `detections(...,
        heads=)` decodes on another thread while this network runs its next pass."""
        heads = []
        for layer in self.layers:
            if hasattr(layer, "detections"):
                head = copy.copy(layer)
                head.output = to_host(layer.output).copy()
                heads.append(head)
        return heads

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

    @property
    def cfg_size(self):
        """(width, height) as the cfg gives them, whatever size random=1 has resized the network to."""
        return self.sections[0].int("width", self.w), self.sections[0].int("height", self.h)

    @contextlib.contextmanager
    def at_size(self, w, h):
        """The network resized to w x h (its parameters shared) for the duration of a `with`, then back."""
        size = (self.w, self.h)
        self.resize(w, h)
        try:
            yield self
        finally:
            self.resize(*size)

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


def load_network(cfg, weights=None, clear=False, verbose=False, complete=False, seed=None):
    """libdarknet's load_network: parse the cfg, load the weights if given; `clear` resets `seen`.

    verbose: print Darknet's layer table and its "Unused field" notes to stderr, as the darknet program does.
    complete: for the commands that must not run on random weights (export, demo), a weights file that does not
    hold every layer's weights (truncated, a partial file, another cfg's) is an error, not a warning.
    seed: the initial weights of the layers the file leaves out (all of them without a file) come from this seed
    (fine-tuning from a partial file such as yolov3-tiny.conv.15 starts from the same head every time).
    """
    cfg = os.fsdecode(cfg)
    net = Network(read_cfg(cfg), cfg)
    covered = bool(weights) and covers_every_layer(net, weights)    # the file overwrites every random weight
    if complete and not covered:
        refuse_incomplete(net, weights)
    if not covered:
        net.init_random(seed)
    if verbose:
        print(net.summary(), file=sys.stderr)
        net.report_unused()
    if weights:
        load_weights(net, weights)
    if clear:
        net.seen = 0
    return net


def refuse_incomplete(net, weights):
    """The error for a weights file that leaves layers of `net` without weights (load_weights's own, where the
    file cannot be read at all)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_weights(net, weights)
    need = sum(layer.file_floats for layer in net.layers if layer.weight_arrays())
    raise WeightsError(f"{os.fsdecode(weights)}: holds fewer than the {need:,} weights {net.path} needs (truncated, "
                       f"a partial file, or for another cfg)")


def partial(cfgfile, weightfile, outfile, max_layers):
    """Darknet's partial: the first N layers' weights, with `seen` cleared (e.g. darknet53.conv.74)."""
    net = load_network(cfgfile, weightfile, clear=True, verbose=True)
    net.weights_header = None   # Darknet writes a fresh 0.2.0 header
    save_weights(net, outfile, upto=max_layers)
    print(f"Saved the weights of layers 0-{min(max_layers, len(net.layers)) - 1} to {outfile}", file=sys.stderr)
    return 0


def randweights(cfgfile, outfile, seed=0):
    """`pydarknet randweights`: sane_random_weights for the cfg, saved to outfile (to try a cfg without training)."""
    net = sane_random_weights(load_network(cfgfile), seed)
    save_weights(net, outfile)
    print(f"Saved random weights for {len(net.layers)} layers to {outfile}", file=sys.stderr)
    return 0
