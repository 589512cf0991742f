"""An independent cross-check: OpenCV's Darknet importer runs the weights pydarknet writes, on the same input.

OpenCV DNN (opencv-python-headless 4.x) reads Darknet's .cfg and .weights itself and computes with its own kernels,
so agreement checks our cfg reading, weight-file layout, im2col/GEMM, batch-norm, pooling, route and upsample against
a second implementation, not against our own oracle. We compare the convolutions that feed the yolo/region layers:
OpenCV's own yolo/region outputs are decoded boxes, not Darknet's buffers. OpenCV names the convolution of Darknet
layer N `conv_N`. A non-square input catches width/height swaps. OpenCV 5 removed readNetFromDarknet: we skip there.
"""
import pathlib
import re

import numpy as np
import pytest

from pydarknet.cfg import read_cfg
from pydarknet.network import Network
from pydarknet.weights import sane_random_weights, save_weights

cv2 = pytest.importorskip("cv2")

REPO_CFG = pathlib.Path(__file__).resolve().parent.parent / "cfg"
TOLERANCE = 1e-4        # relative L2, as for GEMM chains against Darknet

CASES = [
    # cfg, width, height, Darknet layers whose convolution feeds a yolo/region layer
    ("yolov3-tiny", 416, 416, [15, 22]),
    ("yolov3-tiny", 288, 160, [15, 22]),
    ("yolov2-tiny-voc", 416, 416, [14]),
    ("yolov2-tiny-voc", 224, 160, [14]),
]


def relative_l2(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    assert ours.size == theirs.size, f"{ours.size} values against {theirs.size}"
    return np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30)


def he_weights(net, seed):
    """Sane random weights at the full He scale: these shallow networks stay small (rms below 5) and their heads
    move by several percent with the input, so the comparison is not blind."""
    return sane_random_weights(net, seed, he_fraction=1.0)


def resized_cfg(name, width, height, folder):
    """Our cfg with only [net] width/height changed, written where both readers take it from."""
    text = (REPO_CFG / f"{name}.cfg").read_text()
    text, n_w = re.subn(r"(?m)^width\s*=\s*\d+", f"width={width}", text, count=1)
    text, n_h = re.subn(r"(?m)^height\s*=\s*\d+", f"height={height}", text, count=1)
    assert n_w == n_h == 1, f"{name}.cfg: no width=/height= line to change"
    path = folder / f"{name}-{width}x{height}.cfg"
    path.write_text(text)
    return path


def opencv_net(cfg, weights):
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def opencv_layer_outputs(cfg, weights, blob):
    """Every OpenCV layer's output by name, from a fresh net.

    Fresh, because OpenCV 4.14 answers wrongly (relative errors from 0.1 to 1e7) when a net that was once asked
    for all its layers' outputs is later asked for fewer of them (seen with yolov3-tiny; not with the head outputs
    alone, asked again and again).
    """
    cv_net = opencv_net(cfg, weights)
    names = list(cv_net.getLayerNames())
    cv_net.setInput(blob)
    return dict(zip(names, cv_net.forward(names)))


def layer_errors(net, outputs):
    """For each of our layers, its closest OpenCV output of the same size and the relative L2 error to it.

    OpenCV splits Darknet layer N into conv_N, bn_N, leaky_{N+1} (sic), pool_N, upsample_N, concat_N, identity_N;
    the candidates for layer N are those named with suffix N or N+1. Yolo/region layers are left out: OpenCV's
    outputs there are decoded boxes (or a permuted copy), not Darknet's buffers.
    """
    by_index = {}
    for name in outputs:
        match = re.fullmatch(r"[a-z]+_(\d+)", name)
        if match:
            by_index.setdefault(int(match.group(1)), []).append(name)
    result = []
    for i, layer in enumerate(net.layers):
        if layer.type in ("yolo", "region"):
            continue
        ours = net.layer_output(i)
        errors = {name: relative_l2(ours, outputs[name]) for name in by_index.get(i, []) + by_index.get(i + 1, [])
                  if outputs[name].size == ours.size}
        best = min(errors, key=errors.get) if errors else None
        result.append((i, layer.type, best, errors.get(best, np.inf)))
    return result


def first_divergence(net, cfg, weights, blob):
    """Which of our layers first matches none of OpenCV's outputs (the diagnosis for a failed comparison)."""
    for i, kind, name, err in layer_errors(net, opencv_layer_outputs(cfg, weights, blob)):
        if err > TOLERANCE:
            return (f"first divergent layer: {i} [{kind}], closest OpenCV output {name} at {err:.2e}" if name else
                    f"first divergent layer: {i} [{kind}], no OpenCV output of its size")
    return "no single layer diverges beyond tolerance"


def opencv_has_darknet():
    return hasattr(cv2, "dnn") and hasattr(cv2.dnn, "readNetFromDarknet")


needs_darknet_importer = pytest.mark.skipif(
    not opencv_has_darknet(),
    reason=f"OpenCV {cv2.__version__} has no cv2.dnn.readNetFromDarknet (removed in OpenCV 5; "
           f"use opencv-python-headless 4.x)")


@pytest.fixture(scope="module", params=CASES, ids=[f"{c[0]}-{c[1]}x{c[2]}" for c in CASES])
def case(request, tmp_path_factory):
    """Our network with he_weights, run on a seeded blob; the cfg and weights OpenCV reads."""
    name, width, height, heads = request.param
    folder = tmp_path_factory.mktemp(f"{name}-{width}x{height}")
    cfg = resized_cfg(name, width, height, folder)
    net = Network(read_cfg(cfg), str(cfg))
    assert (net.w, net.h) == (width, height)
    he_weights(net, seed=7)
    weights = folder / f"{name}.weights"
    save_weights(net, weights)
    blob = np.random.default_rng(11).random((1, 3, height, width), dtype=np.float32)   # NCHW in [0, 1)
    net.predict(blob[0])
    return name, net, cfg, weights, blob, heads


@needs_darknet_importer
def test_detection_head_inputs_match_opencv(case):
    name, net, cfg, weights, blob, heads = case
    cv_net = opencv_net(cfg, weights)
    cv_net.setInput(blob)   # the blob as it is: no blobFromImage, so no scaling, resizing or channel swap
    cv_outputs = cv_net.forward([f"conv_{i}" for i in heads])
    for i, theirs in zip(heads, cv_outputs):
        assert net.layers[i].type == "convolutional"
        assert net.layers[i + 1].type in ("yolo", "region")
        ours = net.layer_output(i)
        assert ours.shape == theirs.shape, f"layer {i}: ours {ours.shape}, OpenCV conv_{i} {theirs.shape}"
        assert np.isfinite(ours).all()
        err = relative_l2(ours, theirs)
        if err > TOLERANCE:
            pytest.fail(f"{name} {net.w}x{net.h} layer {i} (conv_{i}): relative L2 {err:.2e} > {TOLERANCE:g}; "
                        + first_divergence(net, cfg, weights, blob))


def test_heads_depend_on_the_input(case):
    """Guards the comparison against weights that make every input give the same output."""
    name, net, cfg, weights, blob, heads = case
    before = [net.layer_output(i).copy() for i in heads]
    net.predict(np.random.default_rng(12).random(blob.shape[1:], dtype=np.float32))
    after = [net.layer_output(i).copy() for i in heads]
    net.predict(blob[0])
    for i, a, b in zip(heads, before, after):
        assert relative_l2(b, a) > 1e-2, f"{name} layer {i} hardly depends on the input"


@needs_darknet_importer
def test_every_layer_matches_opencv(case):
    """Layer by layer, so a failure names the first divergent layer, and an early error is caught even where the
    later layers would shrink it under the heads' tolerance (with sane_random_weights as it is, a 1e-3 error at
    yolov3-tiny's layer 9 is 1e-7 by layer 15; with he_weights the heads keep most of it).
    """
    name, net, cfg, weights, blob, heads = case
    compared = layer_errors(net, opencv_layer_outputs(cfg, weights, blob))
    assert len(compared) == sum(layer.type not in ("yolo", "region") for layer in net.layers)
    for i, kind, cv_name, err in compared:
        assert cv_name is not None, f"{name} layer {i} [{kind}]: no OpenCV output of its size"
        assert err <= TOLERANCE, f"{name} layer {i} [{kind}]: relative L2 {err:.2e} against OpenCV's {cv_name}"


# ---- the classifier backbones: every layer, and the final softmax ----------------------------------------------

CLASSIFIERS = [
    # cfg, width, height: small inputs keep the test fast; non-square catches width/height swaps
    ("darknet19", 96, 64),
    ("tiny", 64, 96),
]


@pytest.fixture(scope="module", params=CLASSIFIERS, ids=[f"{c[0]}-{c[1]}x{c[2]}" for c in CLASSIFIERS])
def classifier(request, tmp_path_factory):
    """A classifier backbone with sane_random_weights at a small input, its cfg and weights for OpenCV, a blob."""
    name, width, height = request.param
    folder = tmp_path_factory.mktemp(f"{name}-{width}x{height}")
    cfg = resized_cfg(name, width, height, folder)
    net = Network(read_cfg(cfg), str(cfg))
    he_weights(net, seed=5)
    weights = folder / f"{name}.weights"
    save_weights(net, weights)
    blob = np.random.default_rng(13).random((1, 3, height, width), dtype=np.float32)
    net.predict(blob[0])
    return name, net, cfg, weights, blob


@needs_darknet_importer
def test_classifier_matches_opencv(classifier):
    """The softmax OpenCV ends with, and each of our layers against its OpenCV counterpart (conv, bn, leaky,
    pool, avgpool, softmax): relative L2 within TOLERANCE."""
    name, net, cfg, weights, blob = classifier
    assert net.layers[-1].type == "softmax"
    cv_net = opencv_net(cfg, weights)
    cv_net.setInput(blob)
    theirs = cv_net.forward()
    ours = net.layers[-1].output
    err = relative_l2(ours, theirs)
    assert err <= TOLERANCE, (f"{name} {net.w}x{net.h} softmax: relative L2 {err:.2e}; "
                              + first_divergence(net, cfg, weights, blob))
    compared = layer_errors(net, opencv_layer_outputs(cfg, weights, blob))
    assert len(compared) == len(net.layers)
    for i, kind, cv_name, err in compared:
        assert cv_name is not None, f"{name} layer {i} [{kind}]: no OpenCV output of its size"
        assert err <= TOLERANCE, f"{name} layer {i} [{kind}]: relative L2 {err:.2e} against OpenCV's {cv_name}"


def test_classifier_depends_on_the_input(classifier):
    """Guards the comparison: the logits before the softmax move with the input, and the softmax is not flat."""
    name, net, cfg, weights, blob = classifier
    logits = net.layer_output(len(net.layers) - 2).copy()
    probabilities = net.layers[-1].output.copy()
    net.predict(np.random.default_rng(14).random(blob.shape[1:], dtype=np.float32))
    moved = net.layer_output(len(net.layers) - 2).copy()
    net.predict(blob[0])
    assert relative_l2(moved, logits) > 1e-2, f"{name}: the logits hardly depend on the input"
    assert probabilities.max() > 3 * probabilities.mean(), f"{name}: the softmax is flat"
