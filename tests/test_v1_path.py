"""YOLOv1's round trip: a training image's truth (load_data_region with no augmentation), read through the
[detection] loss's own indexing into a "perfect" layer output, must cost nothing, and `detector map` on that output
must find exactly the labelled boxes (mAP 1). This ties together the three v1 pieces that no golden covers as a
whole: fill_truth_region's cell-relative layout, forward_detection_layer's indexing, and the decoding of the
evaluation path (resize, not letterbox; sqrt of w, h; classes, then confidences, then boxes)."""
import contextlib
import io

import cv2
import numpy as np
import pytest

from pydarknet.detector import map as map_verb
from pydarknet.cfg import read_cfg
from pydarknet.data.labels import label_path
from pydarknet.data.augment import RegionAug, apply_region_aug
from pydarknet.data.labels import read_labels
from pydarknet.image import load_image_color
from pydarknet.network import Network

SIDE, NUM, CLASSES = 4, 2, 3
V1_CFG = f"""
[net]
batch=1
width=48
height=32
channels=3

[connected]
output={SIDE * SIDE * (CLASSES + NUM * 5)}
activation=linear

[detection]
classes={CLASSES}
coords=4
rescore=1
side={SIDE}
num={NUM}
softmax=0
sqrt=1
object_scale=1
noobject_scale=.5
class_scale=1
coord_scale=5
"""
# width, height: other aspect ratios than the network's 48 x 32, so a letterbox would move every box
SIZES = [(64, 64), (100, 40), (30, 90)]
# class, x, y, w, h: one box per grid cell, some off-centre in their cells, one touching an edge
LABELS = [[(0, .30, .40, .20, .50), (2, .85, .10, .30, .18)],
          [(1, .55, .62, .70, .35), (0, .10, .90, .15, .20), (2, .90, .35, .18, .60)],
          [(2, .40, .15, .50, .25)]]


@pytest.fixture
def v1_dataset(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    paths = []
    for k, ((w, h), rows) in enumerate(zip(SIZES, LABELS)):
        path = f"images/v1_{k}.png"
        cv2.imwrite(str(tmp_path / path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        (tmp_path / "labels" / f"v1_{k}.txt").write_text("".join(f"{c} {x} {y} {bw} {bh}\n"
                                                                 for c, x, y, bw, bh in rows))
        paths.append(path)
    (tmp_path / "valid.txt").write_text("\n".join(paths) + "\n")
    (tmp_path / "three.names").write_text("a\nb\nc\n")
    (tmp_path / "v1.data").write_text(f"classes={CLASSES}\nvalid=valid.txt\nnames=three.names\n")
    (tmp_path / "v1.cfg").write_text(V1_CFG)
    monkeypatch.chdir(tmp_path)
    return paths


def training_sample(net, path):
    """load_data_region for one image with no augmentation: (sized image, truth grid)."""
    ids, labels = read_labels(label_path(path, "region"))
    boxes = np.column_stack([labels, ids]).astype(np.float32)
    layer = net.layers[-1]
    return apply_region_aug(load_image_color(path), boxes, net.w, net.h, RegionAug(0, 0, 0, 0), layer.classes,
                            layer.side)


def run_loss(net, output, truth):
    """forward_detection_layer's training part on a given output: (delta, cost, Darknet's stats line)."""
    layer = net.layers[-1]
    layer.output = output.reshape(1, -1).astype(np.float32)
    layer.delta = np.zeros_like(layer.output)
    net.truth = truth.reshape(1, -1)
    line = io.StringIO()
    with contextlib.redirect_stdout(line):
        cost = layer.loss(net)
    return layer.delta.reshape(-1).copy(), cost, line.getvalue()


def perfect_output(net, truth):
    """The targets the loss itself sets, read off its delta at a zero output with unit scales and no rescore:
    one-hot classes, confidence 1 and (x, y, sqrt w, sqrt h) for each cell's first box, zero elsewhere."""
    layer = net.layers[-1]
    saved = {k: getattr(layer, k) for k in ("rescore", "coord_scale", "object_scale", "class_scale")}
    try:
        for k in saved:
            setattr(layer, k, 0 if k == "rescore" else 1.0)
        delta, _, _ = run_loss(net, np.zeros(layer.inputs, np.float32), truth)
    finally:
        for k, v in saved.items():
            setattr(layer, k, v)
    return delta


def test_v1_truth_through_loss_and_decoder_scores_map_one(v1_dataset, monkeypatch):
    net = Network(read_cfg("v1.cfg"), "v1.cfg")
    layer = net.layers[-1]
    samples = []
    for path, rows in zip(v1_dataset, LABELS):
        sized, truth = training_sample(net, path)
        assert truth[::5 + CLASSES].sum() == len(rows)        # one box per cell: none is dropped
        output = perfect_output(net, truth)
        # the perfect output costs nothing, with the cfg's rescore, sqrt and scales, and every IoU is 1
        delta, cost, line = run_loss(net, output, truth)
        assert cost == pytest.approx(0, abs=1e-10), line
        assert "Detection Avg IOU: 1.000000, Pos Cat: 1.000000" in line and f"count: {len(rows)}" in line
        # the decoder reads the same output back as the labelled boxes, relative to the image
        layer.output = output.reshape(1, -1)
        dets = net.detections(1, 1, .5)
        kept = np.flatnonzero(dets.prob.max(axis=1) > 0)
        assert len(kept) == len(rows)
        found = sorted((int(dets.prob[i].argmax()), *dets.bbox[i]) for i in kept)
        np.testing.assert_allclose(np.array(found), np.array(sorted(rows)), atol=1e-6)
        samples.append((sized, output))

    def predict(x):
        """The perfect output of the training sample that x is: evaluation must feed the network the same image."""
        x = np.asarray(x, np.float32).reshape((-1,) + net.input_shape)
        outputs = []
        for image in x:
            match = [out for sized, out in samples if np.allclose(sized, image, atol=1e-5)]
            assert match, "the evaluation input is not the training input (letterboxed instead of resized?)"
            outputs.append(match[0])
        layer.output = np.stack(outputs)
        return layer.output

    monkeypatch.setattr(net, "predict", predict)
    with contextlib.redirect_stdout(io.StringIO()):
        result = map_verb.detector_map("v1.data", net=net)
    truths = sum(map(len, LABELS))
    assert result["map"] == pytest.approx(1.0) and result["coco_map"] == pytest.approx(1.0)
    assert (result["tp"], result["fp"], result["fn"], result["truths"]) == (truths, 0, 0, truths)


def test_shapes_cfg_convolutional_head_gives_the_detection_layer_its_layout():
    """cfg/yolov1-tiny-shapes.cfg computes the [detection] input with 1x1 convolutions: each map (classes,
    confidences, boxes) is transposed cell-major by [reorg] flatten=1 and the three are joined by [route]. The
    detection layer must then find cell (row, col)'s class j, box n's confidence and box n's coordinates where
    forward_detection_layer indexes them, taken from that cell's own position in the three maps."""
    from conftest import REPO
    path = REPO / "cfg" / "yolov1-tiny-shapes.cfg"
    net = Network(read_cfg(path), str(path))
    net.init_random(0)
    detection, route = net.layers[-1], net.layers[-2]
    side, num, classes, coords = detection.side, detection.n, detection.classes, detection.coords
    assert [net.layers[i].type for i in route.layers] == ["reorg"] * 3
    maps = [net.layers[i - 1] for i in route.layers]
    assert [m.out_shape for m in maps] == [(classes, side, side), (num, side, side), (num * coords, side, side)]
    x = np.random.default_rng(0).uniform(0, 1, (2,) + net.input_shape).astype(np.float32)
    net.predict(x)
    got = route.output.reshape(2, -1)          # the detection layer's input
    cls_map, conf_map, box_map = (m.output for m in maps)
    for b, row, col in [(0, 0, 0), (1, 3, 7), (0, side - 1, 2), (1, side - 1, side - 1)]:
        i = row * side + col                      # forward_detection_layer's cell index
        np.testing.assert_array_equal(got[b, i * classes:(i + 1) * classes], cls_map[b, :, row, col])
        for n in range(num):
            assert got[b, side * side * classes + i * num + n] == conf_map[b, n, row, col]
            box = side * side * (classes + num) + (i * num + n) * coords
            np.testing.assert_array_equal(got[b, box:box + coords], box_map[b, n * coords:(n + 1) * coords, row, col])
