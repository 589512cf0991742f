"""The classifier backbones in cfg/ (vgg-16, resnet18, resnet50, alexnet) against a float64 numpy forward.

OpenCV's Darknet importer cross-checks darknet19 and tiny (test_opencv_crosscheck.py) but rejects vgg-16's relu and
[crop]; these four are checked instead against a forward written here from Darknet's C: it reads our cfg's sections
with Darknet's defaults and the .weights file pydarknet saved, in Darknet's load order, and runs tests/reference.py's
float64 kernels with batch-norm on the rolling statistics. Each network runs at a small input (vgg-16's crop made
smaller with it), which also shrinks the connected layers that follow the convolutions.
"""
import pathlib
import re

import numpy as np
import pytest

from pydarknet.cfg import read_cfg
from pydarknet.network import Network
from pydarknet.weights import sane_random_weights, save_weights

import reference

CFG = pathlib.Path(__file__).resolve().parent.parent / "cfg"
TOLERANCE = 1e-4        # relative L2, float32 GEMM chains against float64

BACKBONES = [
    # cfg, width, height, options changed with them (non-square catches width/height swaps), and the fraction of
    # the He scale for sane_random_weights: the full scale keeps the plain networks' signal; the residual ones'
    # logits stay near 1 at 0.7 (at 1.0 resnet50's grow to ~1000, a one-hot softmax; at 0.5 it is almost flat)
    ("vgg-16", 38, 36, {"crop_width": 32, "crop_height": 32}, 1.0),    # a centred crop at offset (3, 2)
    ("alexnet", 67, 75, {}, 1.0),                                      # 1x1x256 before the connected layers
    ("resnet18", 64, 48, {}, 0.7),
    ("resnet50", 48, 64, {}, 0.7),
]

ALL_SIX = ["darknet19", "tiny", "alexnet", "vgg-16", "resnet18", "resnet50"]


def small_cfg(name, width, height, options, folder):
    """Our cfg with [net] width/height and the first line of each other key in `options` changed."""
    text = (CFG / f"{name}.cfg").read_text()
    for key, value in dict(width=width, height=height, **options).items():
        text, n = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", text, count=1)
        assert n == 1, f"{name}.cfg: no {key}= line to change"
    path = folder / f"{name}-{width}x{height}.cfg"
    path.write_text(text)
    return path


def relative_l2(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    assert ours.size == theirs.size, f"{ours.size} values against {theirs.size}"
    return np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30)


class WeightsFile:
    """The floats of a .weights file after its header, read in order as Darknet's load_weights does."""

    def __init__(self, path):
        data = pathlib.Path(path).read_bytes()
        major, minor, _ = np.frombuffer(data[:12], "<i4")
        seen_bytes = 8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4
        self.floats = np.frombuffer(data[12 + seen_bytes:], "<f4").astype(np.float64)
        self.at = 0

    def take(self, n):
        assert self.at + n <= self.floats.size, "the weights file ends early"
        self.at += n
        return self.floats[self.at - n:self.at]


def reference_forward(cfg, weights, x):
    """Darknet's inference forward of the cfg, in float64: the output of every layer, (B, C, H, W) or (B, N, 1, 1).

    Only the layer types the backbones use; options are read with parse_network_cfg's defaults."""
    sections = read_cfg(cfg)
    file = WeightsFile(weights)
    outputs = []
    for s in sections[1:]:
        o = s.options
        if s.name == "convolutional":
            filters, size, stride = int(o["filters"]), int(o["size"]), int(o.get("stride", 1))
            padding = size // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
            biases = file.take(filters)
            if int(o.get("batch_normalize", 0)):          # load_convolutional_weights: biases, bn, weights
                scales, mean, variance = file.take(filters), file.take(filters), file.take(filters)
            kernel = file.take(filters * x.shape[1] * size * size).reshape(filters, -1)
            z = reference.convolution(x, kernel, size, stride, padding)
            if int(o.get("batch_normalize", 0)):
                z = reference.batchnorm_inference(z, scales, biases, mean, variance)
            else:
                z = z + biases.reshape(1, -1, 1, 1)
            x = reference.activate(z, o.get("activation", "logistic"))
        elif s.name == "connected":
            n, inputs = int(o["output"]), x[0].size
            biases = file.take(n)                              # load_connected_weights: biases, weights, bn
            matrix = file.take(n * inputs).reshape(n, inputs)
            z = (x.reshape(x.shape[0], -1) @ matrix.T).reshape(x.shape[0], n, 1, 1)
            if int(o.get("batch_normalize", 0)):
                scales, mean, variance = file.take(n), file.take(n), file.take(n)
                z = reference.batchnorm_inference(z, scales, biases, mean, variance)
            else:
                z = z + biases.reshape(1, -1, 1, 1)
            x = reference.activate(z, o.get("activation", "logistic"))
        elif s.name == "maxpool":
            stride = int(o.get("stride", 1))
            size = int(o.get("size", stride))
            x = reference.maxpool(x, size, stride, int(o.get("padding", size - 1)))
        elif s.name == "avgpool":
            x = reference.avgpool(x)
        elif s.name == "shortcut":
            add = outputs[len(outputs) + int(o["from"])]
            x = reference.shortcut(x, add, float(o.get("alpha", 1)), float(o.get("beta", 1)),
                                   o.get("activation", "linear"))
        elif s.name == "dropout":
            pass                                               # identity at inference
        elif s.name == "softmax":
            shape = x.shape
            x = reference.softmax(x.reshape(shape[0], -1, 1, 1), int(o.get("groups", 1)),
                                  float(o.get("temperature", 1))).reshape(shape)
        elif s.name == "crop":
            out_h, out_w = int(o["crop_height"]), int(o["crop_width"])
            h, w = x.shape[2:]
            x = reference.crop(x, out_h, out_w, (h - out_h) // 2, (w - out_w) // 2, 0, int(o.get("noadjust", 0)))
        else:
            raise AssertionError(f"{cfg}: the reference forward has no [{s.name}]")
        outputs.append(x)
    assert file.at == file.floats.size, f"{file.floats.size - file.at} floats of the weights file left unread"
    return outputs


@pytest.fixture(scope="module", params=BACKBONES, ids=[f"{b[0]}-{b[1]}x{b[2]}" for b in BACKBONES])
def backbone(request, tmp_path_factory):
    """Our network with sane random weights at a small input, run on a seeded image; the cfg and weights saved."""
    name, width, height, options, he_fraction = request.param
    folder = tmp_path_factory.mktemp(name)
    cfg = small_cfg(name, width, height, options, folder)
    net = Network(read_cfg(cfg), str(cfg))
    sane_random_weights(net, seed=3, he_fraction=he_fraction)
    weights = folder / f"{name}.weights"
    save_weights(net, weights)
    image = np.random.default_rng(17).random((3, height, width), dtype=np.float32)
    net.predict(image)
    return name, net, cfg, weights, image


def test_backbone_matches_float64_reference(backbone):
    """Every layer's output, so that a failure names the first divergent layer; the softmax is the last."""
    name, net, cfg, weights, image = backbone
    expected = reference_forward(cfg, weights, image[None].astype(np.float64))
    assert len(expected) == len(net.layers)
    assert net.layers[-1].type == "softmax"
    for i, (layer, theirs) in enumerate(zip(net.layers, expected)):
        ours = net.layer_output(i)
        assert np.isfinite(ours).all(), f"{name} layer {i} [{layer.type}]: not finite"
        err = relative_l2(ours, theirs)
        assert err <= TOLERANCE, f"{name} {net.w}x{net.h} layer {i} [{layer.type}]: relative L2 {err:.2e}"


def test_backbone_depends_on_the_input(backbone):
    """Guards the comparison: the logits move with the input, and the softmax is not flat."""
    name, net, cfg, weights, image = backbone
    logits = net.layer_output(len(net.layers) - 2).copy()
    probabilities = net.layer_output(len(net.layers) - 1).copy()
    net.predict(np.random.default_rng(18).random(image.shape, dtype=np.float32))
    moved = net.layer_output(len(net.layers) - 2).copy()
    net.predict(image)
    assert relative_l2(moved, logits) > 1e-2, f"{name}: the logits hardly depend on the input"
    assert probabilities.max() > 3 * probabilities.mean(), f"{name}: the softmax is flat"


@pytest.mark.parametrize("name", ALL_SIX)
def test_backbone_cfg_reads_every_option(name):
    """Every option of our cfg is read (Darknet's parse reports none unused for these six)."""
    net = Network(read_cfg(CFG / f"{name}.cfg"), str(CFG / f"{name}.cfg"))
    assert net.unused == [], [f"line {line}: {key}={value} in [{s.name}]" for s, key, value, line in net.unused]
