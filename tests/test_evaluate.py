"""Evaluation: compute_map against hand-computed curves and pycocotools / faster-coco-eval, and the detector
valid / recall / map runs end to end on a tiny generated dataset with a random-weights network."""
import contextlib
import io
import json
import math
import os
import re

import cv2
import numpy as np
import pytest

from pydarknet.data import labels
from pydarknet.detector import map as map_verb
from pydarknet.detector import train, valid
from pydarknet.box import Detections
from pydarknet.cfg import read_cfg
from pydarknet.cli import main
from pydarknet.detector.pipeline import detect_image
from pydarknet.network import load_network
from pydarknet.errors import DarknetError
from pydarknet.data.coco import COCO_IDS
from pydarknet.data.labels import label_path
from pydarknet.metrics import compute_map
from pydarknet.image import load_image_color
from pydarknet.network import Network
from pydarknet.weights import sane_random_weights, save_weights
from tests.test_cli import TINY_CFG

NAMES = ["circle", "square", "triangle"]
SIZES = [(160, 120), (100, 140), (128, 128), (90, 60), (120, 80)]     # width, height: letterboxing both ways


# ----------------------------------------------------------------------------------------------------------------
# compute_map on hand-made cases

def test_perfect_detector_scores_one():
    truths = {0: [(0, 10, 10, 50, 60), (1, 30, 30, 90, 80)], 1: [(1, 5, 5, 20, 20)], 2: [(2, 0, 0, 100, 100)]}
    dets = {k: [(c, 1.0, x1, y1, x2, y2) for c, x1, y1, x2, y2 in v] for k, v in truths.items()}
    for method in ("voc", "voc11", "coco"):
        result = compute_map(dets, truths, 3, method=method)
        assert result["map"] == pytest.approx(1.0, abs=1e-12), method
        assert result["ap"] == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0}), method
        assert result["truths"] == {0: 1, 1: 2, 2: 1}
    assert compute_map(dets, truths, 3, method="coco")["map75"] == pytest.approx(1.0)


def known_curve():
    """One class, four truths; detections ranked TP FP TP FP TP (the fourth truth is never found).

    rank:      1    2    3    4    5
    precision  1   1/2  2/3  1/2  3/5
    recall    1/4  1/4  1/2  1/2  3/4
    """
    truths = [(0, 0, 0, 10, 10), (0, 20, 0, 30, 10), (0, 40, 0, 50, 10), (0, 60, 0, 70, 10)]
    far = [(0, 200, 200, 210, 210), (0, 300, 300, 310, 310)]
    dets = [(0, .9) + truths[0][1:], (0, .8) + far[0][1:], (0, .7) + truths[1][1:], (0, .6) + far[1][1:],
            (0, .5) + truths[2][1:]]
    return {7: dets}, {7: truths}


def test_known_pr_curve_voc_all_points_and_11_points():
    dets, truths = known_curve()
    # all points: the precision envelope is 1 up to recall 1/4, 2/3 up to 1/2, 3/5 up to 3/4
    expected_voc = .25 * 1 + .25 * 2 / 3 + .25 * .6
    assert compute_map(dets, truths, 1, method="voc")["map"] == pytest.approx(expected_voc, abs=1e-12)
    # 11 points: recall >= 0 .1 .2 -> 1; .3 .4 .5 -> 2/3; .6 .7 -> .6; .8 .9 1 -> 0
    expected_11 = (3 * 1 + 3 * 2 / 3 + 2 * .6) / 11
    assert compute_map(dets, truths, 1, method="voc11")["map"] == pytest.approx(expected_11, abs=1e-12)


def test_known_pr_curve_coco_101_points():
    dets, truths = known_curve()
    # every true positive has IoU 1, so all ten IoU thresholds give the same curve: 26 recall points (0 to .25)
    # at precision 1, 25 at 2/3, 25 at .6, 25 above the last recall at 0
    expected = (26 * 1 + 25 * 2 / 3 + 25 * .6) / 101
    result = compute_map(dets, truths, 1, method="coco")
    assert result["map"] == pytest.approx(expected, abs=1e-12)
    assert result["map50"] == pytest.approx(expected, abs=1e-12)


def test_iou_of_exactly_half_counts_for_coco_only():
    """VOC and AlexeyAB need IoU > .5, pycocotools IoU >= .5."""
    truths = {0: [(0, 0, 0, 2, 1)]}
    dets = {0: [(0, .9, 0, 0, 1, 1)]}        # intersection 1, union 2
    assert compute_map(dets, truths, 1, method="voc")["map"] == 0
    assert compute_map(dets, truths, 1, iou_thresh=.49, method="voc")["map"] == 1
    assert compute_map(dets, truths, 1, method="coco")["map50"] == pytest.approx(1.0)


def test_duplicate_detection_is_a_false_positive():
    truths = {0: [(0, 0, 0, 10, 10)]}
    dets = {0: [(0, .9, 0, 0, 10, 10), (0, .8, 0, 0, 10, 10), (0, .7, 100, 100, 110, 110)]}
    for method in ("voc", "voc11", "coco"):
        assert compute_map(dets, truths, 1, method=method)["map"] == pytest.approx(1.0), method
    # the duplicate ranked first: precision 1/2 at recall 1
    dets = {0: [(0, .9, 100, 100, 110, 110), (0, .8, 0, 0, 10, 10), (0, .7, 0, 0, 10, 10)]}
    assert compute_map(dets, truths, 1, method="voc")["map"] == pytest.approx(.5)


def test_classes_without_truth_are_left_out_and_missed_classes_score_zero():
    truths = {0: [(0, 0, 0, 10, 10)], 1: [(2, 0, 0, 10, 10)]}
    dets = {0: [(0, .9, 0, 0, 10, 10), (1, .9, 0, 0, 10, 10)], 1: [(5, .9, 0, 0, 10, 10)]}   # class 5: not asked
    result = compute_map(dets, truths, 3)
    assert result["ap"][0] == 1 and math.isnan(result["ap"][1]) and result["ap"][2] == 0
    assert result["map"] == pytest.approx(.5)
    assert compute_map(dets, truths, [2])["ap"] == {2: 0.0}
    assert math.isnan(compute_map({}, {}, 2)["map"])


def test_arrays_and_images_only_in_one_dict():
    truths = {"a": np.array([[0, 0, 0, 10, 10]]), "b": np.zeros((0, 5))}
    dets = {"a": np.array([[0, .5, 0, 0, 10, 10]]), "c": [(0, .9, 0, 0, 10, 10)]}   # "c" has no truth: a FP
    assert compute_map(dets, truths, 1)["map"] == pytest.approx(.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        compute_map({}, {}, 1, method="voc2012")
    with pytest.raises(ValueError, match="6 numbers"):
        compute_map({0: [(0, .5, 1, 2)]}, {}, 1)


# ----------------------------------------------------------------------------------------------------------------
# COCO: the same numbers as pycocotools and faster-coco-eval

def random_dataset(seed, images=40, classes=6):
    """Truths of classes 0..classes-2 (the last class has detections only); jittered detections of the truths,
    some with the wrong class, plus clutter; scores rounded so that ties occur; one image with > 100 detections
    of one class (maxDets)."""
    rng = np.random.default_rng(seed)
    truths, dets = {}, {}
    for image in range(1, images + 1):
        t = []
        for _ in range(rng.integers(0, 7)):
            x, y = rng.uniform(0, 500, 2)
            w, h = rng.uniform(4, 150, 2)
            t.append((int(rng.integers(0, classes - 1)), x, y, x + w, y + h))
        d = []
        for c, x1, y1, x2, y2 in t:
            for _ in range(rng.integers(0, 3)):
                j = rng.normal(0, .08 * (x2 - x1 + y2 - y1) / 2, 4)
                cls = c if rng.random() < .85 else int(rng.integers(0, classes))
                d.append((cls, round(rng.uniform(.3, 1), 2), x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3]))
        for _ in range(rng.integers(0, 25)):
            x, y = rng.uniform(0, 500, 2)
            w, h = rng.uniform(4, 150, 2)
            d.append((int(rng.integers(0, classes)), round(rng.uniform(0, .6), 2), x, y, x + w, y + h))
        truths[image], dets[image] = t, d
    x, y = rng.uniform(0, 400, (2, 130))
    dets[1] += [(0, round(s, 3), a, b, a + 30, b + 30) for s, a, b in zip(rng.random(130), x, y)]
    truths[1].append((0, 10, 10, 40, 40))
    return dets, truths


def coco_dicts(dets, truths, classes):
    dataset = {"images": [{"id": i} for i in truths], "categories": [{"id": c} for c in range(classes)],
               "annotations": []}
    for i, t in truths.items():
        for c, x1, y1, x2, y2 in t:
            dataset["annotations"].append({"id": len(dataset["annotations"]) + 1, "image_id": i, "category_id": c,
                                           "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                           "iscrowd": 0})
    results = [{"image_id": i, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
               for i, d in dets.items() for c, s, x1, y1, x2, y2 in d]
    return dataset, results


def pycocotools_stats(dets, truths, classes):
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        pytest.skip("pycocotools is not installed (pip install pycocotools)")
    dataset, results = coco_dicts(dets, truths, classes)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        run = COCOeval(gt, gt.loadRes(results), "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    return run.stats


def faster_coco_eval_stats(dets, truths, classes):
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError:
        pytest.skip("faster-coco-eval is not installed (pip install faster-coco-eval)")
    dataset, results = coco_dicts(dets, truths, classes)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(dataset)
        run = COCOeval_faster(gt, gt.loadRes(results), "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    return run.stats


@pytest.mark.parametrize("seed", range(4))
def test_coco_map_equals_pycocotools(seed):
    dets, truths = random_dataset(seed)
    ours = compute_map(dets, truths, 6, method="coco")
    stats = pycocotools_stats(dets, truths, 6)
    assert 0.05 < stats[0] < 0.95                 # a curve with something to get wrong
    assert ours["map"] == pytest.approx(stats[0], abs=1e-6)
    assert ours["map50"] == pytest.approx(stats[1], abs=1e-6)
    assert ours["map75"] == pytest.approx(stats[2], abs=1e-6)
    assert math.isnan(ours["ap"][5])               # detections only: pycocotools leaves it out too


def test_coco_map_counts_only_100_detections_per_image_and_class():
    """100 false positives outscore the one true positive: COCO drops it (maxDets 100), VOC keeps it."""
    truths = {1: [(0, 0, 0, 10, 10)], 2: [(0, 0, 0, 10, 10)]}
    clutter = [(0, .5 + i / 1000, 100 + 20 * i, 100, 110 + 20 * i, 110) for i in range(100)]
    dets = {1: clutter + [(0, .1, 0, 0, 10, 10)], 2: [(0, .9, 0, 0, 10, 10)]}
    coco = compute_map(dets, truths, 1, method="coco")
    assert coco["map50"] == pytest.approx(51 / 101, abs=1e-12)     # precision 1 up to recall .5, then nothing
    assert compute_map(dets, truths, 1, method="voc")["map"] == pytest.approx(.5 + .5 * 2 / 102)
    assert coco["map"] == pytest.approx(pycocotools_stats(dets, truths, 1)[0], abs=1e-6)


@pytest.mark.parametrize("seed", range(2))
def test_coco_map_equals_faster_coco_eval(seed):
    dets, truths = random_dataset(seed + 10)
    ours = compute_map(dets, truths, 6, method="coco")
    stats = faster_coco_eval_stats(dets, truths, 6)
    assert ours["map"] == pytest.approx(stats[0], abs=1e-6)
    assert ours["map50"] == pytest.approx(stats[1], abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Dataset helpers

def test_label_path_rule():
    assert label_path("/data/voc/VOCdevkit/VOC2007/JPEGImages/000005.jpg") == \
        "/data/voc/VOCdevkit/VOC2007/labels/000005.txt"
    assert label_path("/data/coco/images/val2014/COCO_val2014_000000000042.jpg") == \
        "/data/coco/labels/val2014/COCO_val2014_000000000042.txt"
    assert label_path("set/images/a.png") == "set/labels/a.txt"
    assert label_path("set/images/b.JPEG") == "set/labels/b.txt"


def test_read_labels(tmp_path):
    from pydarknet.data.labels import DataWarning
    (tmp_path / "a.txt").write_text("1 0.5 0.5 0.25 0.125\n\n2 .1 .2 .3 .4\n")
    ids, boxes = labels.read_labels(tmp_path / "a.txt")
    assert ids.tolist() == [1, 2]
    np.testing.assert_array_equal(boxes, np.float32([[.5, .5, .25, .125], [.1, .2, .3, .4]]))
    with pytest.warns(DataWarning):
        ids, boxes = labels.read_labels(tmp_path / "missing.txt")
    assert len(ids) == 0 and boxes.shape == (0, 4)
    (tmp_path / "bad.txt").write_text("1 0.5 0.5 0.25\n0 .5 .5 .1 .1\n")
    with pytest.warns(DataWarning, match="bad.txt:1"):
        ids, boxes = labels.read_labels(tmp_path / "bad.txt")
    assert ids.tolist() == [0]


def test_coco_image_id():
    assert valid.coco_image_id("/x/COCO_val2014_000000000042.jpg") == 42
    assert valid.coco_image_id("val2017/000000000139.jpg") == 139
    with pytest.raises(DarknetError, match="dog.jpg"):
        valid.coco_image_id("data/dog.jpg")


def test_coco_ids_are_darknets():
    assert len(COCO_IDS) == 80 and COCO_IDS[:12] == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13) and COCO_IDS[-1] == 90
    assert list(COCO_IDS) == sorted(set(COCO_IDS))


# ----------------------------------------------------------------------------------------------------------------
# End to end on a tiny dataset

@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """images/val_00000K.png with labels/val_00000K.txt, valid.txt, three.names, voc.data and coco.data, a tiny
    yolo cfg with random weights; the working folder is the dataset's."""
    rng = np.random.default_rng(5)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    paths, labels = [], {}
    for k, (w, h) in enumerate(SIZES, 1):
        path = tmp_path / "images" / f"val_{k:06d}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        rows = [(int(rng.integers(0, 3)), *np.round(rng.uniform(.3, .7, 2), 6), *np.round(rng.uniform(.1, .4, 2), 6))
                for _ in range(rng.integers(1, 4))]
        (tmp_path / "labels" / f"val_{k:06d}.txt").write_text("".join(f"{c} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n"
                                                                      for c, x, y, bw, bh in rows))
        paths.append(f"images/{path.name}")     # relative: label_path replaces the first 'images' of the path
        labels[path.stem] = rows
    (tmp_path / "valid.txt").write_text("\n".join(paths) + "\n")
    (tmp_path / "three.names").write_text("\n".join(NAMES) + "\n")
    (tmp_path / "voc.data").write_text("classes=3\nvalid=valid.txt\nnames=three.names\nresults=results\n")
    (tmp_path / "coco.data").write_text("classes=3\nvalid=valid.txt\nnames=three.names\neval=coco\n")
    (tmp_path / "tiny.cfg").write_text(TINY_CFG)
    net = Network(read_cfg(tmp_path / "tiny.cfg"), "tiny.cfg")
    sane_random_weights(net, seed=3)
    save_weights(net, tmp_path / "tiny.weights")
    monkeypatch.chdir(tmp_path)
    return {"root": tmp_path, "paths": paths, "labels": labels, "sizes": dict(zip(labels, SIZES))}


VOC_LINE = re.compile(r"^(val_\d{6}) (\d\.\d{6})" + r" (-?\d+\.\d{6})" * 4 + "$")


def parse_voc(path):
    rows = []
    for line in open(path).read().splitlines():
        match = VOC_LINE.match(line)
        assert match, line
        rows.append((match.group(1), *map(float, match.groups()[1:])))
    return rows


def test_valid_writes_voc_files(dataset, capsys):
    written = valid.validate_detector("voc.data", "tiny.cfg", "tiny.weights")
    assert sorted(written) == sorted(os.path.join("results", f"comp4_det_test_{n}.txt") for n in NAMES)
    per_image = {}
    for name in NAMES:
        for image_id, prob, xmin, ymin, xmax, ymax in parse_voc(f"results/comp4_det_test_{name}.txt"):
            w, h = dataset["sizes"][image_id]
            assert .005 < prob <= 1
            # Darknet clamps xmin, ymin up to 1 and xmax, ymax down to the size, each on its own: a box that lies
            # outside the image keeps its inverted corners, as in Darknet's files
            assert 1 <= xmin and xmax <= w and 1 <= ymin and ymax <= h
            per_image[image_id] = per_image.get(image_id, 0) + 1
    assert set(per_image) == set(dataset["labels"])
    # the same records as Darknet's test path at thresh .005, NMS .45: one line per nonzero class probability
    net = load_network("tiny.cfg", "tiny.weights")
    for path in dataset["paths"]:
        dets, _ = detect_image(net, load_image_color(path), thresh=.005, hier=.5, nms=.45)
        assert per_image[os.path.basename(path)[:-4]] == np.count_nonzero(dets.prob)
    err = capsys.readouterr().err
    assert "images/s, ETA" in err and f"{len(SIZES)}/{len(SIZES)} images" in err
    assert "Total Detection Time:" in err


def test_valid_batched_writes_the_same_files(dataset):
    valid.validate_detector("voc.data", "tiny.cfg", "tiny.weights", outfile="one_")
    valid.validate_detector("voc.data", "tiny.cfg", "tiny.weights", outfile="three_", batch=3)
    for name in NAMES:
        one = parse_voc(f"results/one_{name}.txt")
        three = parse_voc(f"results/three_{name}.txt")
        assert len(one) == len(three) > 0
        np.testing.assert_allclose(np.array([r[1:] for r in one]), np.array([r[1:] for r in three]), atol=2e-6)



def test_map_batched_is_the_map_one_at_a_time_and_training_batches_it(dataset, monkeypatch, capsys):
    one = map_verb.detector_map("voc.data", "tiny.cfg", "tiny.weights")
    three = map_verb.detector_map("voc.data", "tiny.cfg", "tiny.weights", batch=3)
    assert one["detections"] == three["detections"] > 0
    assert abs(one["map"] - three["map"]) < 1e-6 and abs(one["coco_map"] - three["coco_map"]) < 1e-6
    # training's -map measures with the training batch
    net = load_network("tiny.cfg", "tiny.weights")
    net.batch = 3
    seen = []
    monkeypatch.setattr(train, "detector_map", lambda datacfg, net, batch, comm: seen.append((batch, comm)) or
                        {"map": .5})
    assert train.evaluate_map("voc.data", net, None) == .5 and seen == [(3, None)]

def test_valid_writes_coco_json(dataset):
    written = valid.validate_detector("coco.data", "tiny.cfg", "tiny.weights")
    assert written == [os.path.join("results", "coco_results.json")]
    text = open(written[0]).read()
    assert text.startswith("[\n{\"image_id\":") and text.endswith("}\n]\n")
    records = json.loads(text)
    assert records and set(records[0]) == {"image_id", "category_id", "bbox", "score"}
    sizes = {int(stem[4:]): size for stem, size in dataset["sizes"].items()}
    assert {r["image_id"] for r in records} == set(sizes)
    assert {r["category_id"] for r in records} <= {1, 2, 3}
    for r in records:
        x, y, bw, bh = r["bbox"]
        w, h = sizes[r["image_id"]]
        assert 0 <= x and 0 <= y and 0 < r["score"] <= 1       # clamped on each side (print_cocos)
        assert x + bw <= w + 1e-4 and y + bh <= h + 1e-4


def perfect_predictions(dataset, prob=.9):
    """A stand-in for detector/valid.py's predictions that detects exactly the labelled boxes."""
    def predictions(net, paths, thresh, hier, nms, batch=1, quiet=False):
        for path in paths:
            stem = os.path.basename(path)[:-4]
            rows = dataset["labels"][stem]
            w, h = dataset["sizes"][stem]
            probs = np.zeros((len(rows), 3), np.float32)
            probs[np.arange(len(rows)), [r[0] for r in rows]] = prob
            bbox = np.float32([r[1:] for r in rows])
            yield path, w, h, Detections(bbox, np.ones(len(rows)), probs)
    return predictions


def test_perfect_detections_file_scores_map_one(dataset, monkeypatch):
    """Perfect detections written as Darknet's VOC files and read back: mAP 1 against the labels."""
    monkeypatch.setattr(valid, "predictions", perfect_predictions(dataset))
    valid.validate_detector("voc.data", "tiny.cfg", "tiny.weights")
    dets, truths = {}, {}
    for k, name in enumerate(NAMES):
        for image_id, prob, xmin, ymin, xmax, ymax in parse_voc(f"results/comp4_det_test_{name}.txt"):
            dets.setdefault(image_id, []).append((k, prob, xmin - 1, ymin - 1, xmax - 1, ymax - 1))
    for stem, rows in dataset["labels"].items():
        w, h = dataset["sizes"][stem]
        truths[stem] = [(c, (x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h)
                        for c, x, y, bw, bh in rows]
    assert sum(map(len, dets.values())) == sum(map(len, truths.values()))
    for method in ("voc", "voc11", "coco"):
        assert compute_map(dets, truths, 3, method=method)["map"] == pytest.approx(1.0), method


def test_detector_map_of_perfect_detections_is_one(dataset, monkeypatch, capsys):
    monkeypatch.setattr(map_verb, "predictions", perfect_predictions(dataset))
    result = map_verb.detector_map("voc.data", "tiny.cfg", "tiny.weights")
    truths = sum(map(len, dataset["labels"].values()))
    assert result["map"] == result["map11"] == pytest.approx(1.0)
    assert result["coco_map"] == pytest.approx(1.0)
    assert (result["tp"], result["fp"], result["fn"], result["truths"]) == (truths, 0, 0, truths)
    assert result["precision"] == result["recall"] == result["f1"] == pytest.approx(1.0)
    assert result["average_iou"] == pytest.approx(1.0, abs=1e-6)
    out = capsys.readouterr().out
    assert "mean average precision (mAP@0.50) = 1.000000, or 100.00 % " in out
    assert " for conf_thresh = 0.25, precision = 1.00, recall = 1.00, F1-score = 1.00 " in out
    # below the confidence threshold nothing counts as TP or FP, but the AP is the same
    result = map_verb.detector_map("voc.data", "tiny.cfg", "tiny.weights", thresh=.95)
    assert result["tp"] == result["fp"] == 0 and result["map"] == pytest.approx(1.0)


def test_detector_map_of_random_network(dataset, capsys):
    result = map_verb.detector_map("voc.data", "tiny.cfg", "tiny.weights", thresh=.2)
    out = capsys.readouterr().out
    for k, name in enumerate(NAMES):
        assert re.search(rf"^class_id = {k}, name = {name}, ap = (\d+\.\d\d%|  n/a )   \t \(TP = \d+, FP = \d+\)",
                         out, re.M), out
    assert re.search(r"^ mean average precision \(mAP@0\.50\) = \d\.\d{6}, or \d+\.\d\d % $", out, re.M)
    assert "MS COCO mAP@[.50:.95]" in out and "11 Recall-points" in out
    for key in ("map", "map11", "coco_map", "coco_map50", "precision", "recall"):
        assert 0 <= result[key] <= 1, key
    assert result["coco_map"] <= result["coco_map50"] + 1e-12
    assert result["detections"] > 0 and result["truths"] == sum(map(len, dataset["labels"].values()))
    assert result["tp"] + result["fn"] == result["truths"]


def test_detector_map_with_loaded_network_reads_train_list(dataset, capsys):
    (dataset["root"] / "train.data").write_text("classes=3\ntrain=valid.txt\nnames=three.names\n")
    net = load_network("tiny.cfg", "tiny.weights")
    result = map_verb.detector_map("train.data", None, None, net=net)
    assert result["images"] == len(SIZES) and 0 <= result["map"] <= 1


def test_recall_prints_darknets_line(dataset, capsys):
    result = valid.validate_detector_recall("voc.data", "tiny.cfg", "tiny.weights")
    lines = [line for line in capsys.readouterr().err.splitlines() if "RPs/Img" in line]
    assert len(lines) == len(SIZES)
    pattern = re.compile(r"^ {0,4}(\d+) +(\d+) +(\d+)\tRPs/Img: \d+\.\d\d\tIOU: \d+\.\d\d%\tRecall:\d+\.\d\d%$")
    fields = [pattern.match(line) for line in lines]
    assert all(fields), lines
    assert [int(f.group(1)) for f in fields] == list(range(len(SIZES)))
    last = fields[-1]
    assert (int(last.group(2)), int(last.group(3))) == (result["correct"], result["total"])
    assert result["total"] == sum(map(len, dataset["labels"].values()))
    assert 0 <= result["correct"] <= result["total"] and 0 <= result["average_iou"] <= 1
    assert result["proposals"] > 0


# ----------------------------------------------------------------------------------------------------------------
# The command line

def test_cli_valid_with_out_prefix(dataset):
    assert main(["detector", "valid", "voc.data", "tiny.cfg", "tiny.weights", "-out", "mine_"]) == 0
    assert all(os.path.exists(f"results/mine_{n}.txt") for n in NAMES)
    assert not os.path.exists("results/comp4_det_test_circle.txt")
    assert main(["detector", "valid", "coco.data", "tiny.cfg", "tiny.weights", "-out", "dets"]) == 0
    assert json.load(open("results/dets.json"))


def test_cli_map_and_recall(dataset, capsys):
    assert main(["detector", "map", "voc.data", "tiny.cfg", "tiny.weights", "-thresh", ".5",
                 "-iou_thresh", ".4"]) == 0
    out = capsys.readouterr().out
    assert "mean average precision (mAP@0.40) = " in out and "for conf_thresh = 0.50, precision = " in out
    assert "IoU threshold = 40 %" in out
    assert main(["detector", "recall", "voc.data", "tiny.cfg", "tiny.weights"]) == 0
    assert "RPs/Img" in capsys.readouterr().err


def test_cli_usage_and_missing_list(dataset, capsys):
    assert main(["detector", "map", "voc.data"]) == 2
    assert "usage: pydarknet detector map" in capsys.readouterr().err
    (dataset["root"] / "nolist.data").write_text("classes=3\nvalid=nowhere.txt\nnames=three.names\n")
    assert main(["detector", "valid", "nolist.data", "tiny.cfg", "tiny.weights"]) == 1
    assert "Couldn't open file: nowhere.txt" in capsys.readouterr().err
