"""The weights `make demo` trained, shipped in weights/, find the shapes in data/shapes-sample.png; and make demo's
program, examples/shapes_demo.py."""
import importlib.util
import os
import sys

import numpy as np

from pydarknet import Detector
from pydarknet.data.shapes import sample
from tests.conftest import REPO


def load_shapes_demo():
    """examples/shapes_demo.py, a program beside the package (not part of it), loaded from its file."""
    spec = importlib.util.spec_from_file_location("shapes_demo", REPO / "examples" / "shapes_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def iou(a, b):
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a, b
    w = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    h = max(0.0, min(ay1, by1) - max(ay0, by0))
    return w * h / ((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - w * h)


def test_shipped_weights_find_the_sample_shapes():
    image, shapes = sample(12345, 7, size=320)      # how data/shapes-sample.png was made
    stored = __import__("cv2").imread(str(REPO / "data" / "shapes-sample.png"))
    np.testing.assert_array_equal(stored, image)
    detector = Detector(REPO / "cfg" / "yolov3-tiny-shapes.cfg", REPO / "weights" / "yolov3-tiny-shapes.weights",
                        names=REPO / "data" / "shapes.names", thresh=.5)
    found = detector.detect(REPO / "data" / "shapes-sample.png")
    matched = 0
    for shape in shapes:
        truth = shape.box        # x0, y0, x1 (exclusive), y1 in pixels
        if any(d.name == shape.name and iou(d.corners, truth) > .5 for d in found):
            matched += 1
    assert matched >= len(shapes) - 1, (found, shapes)
    assert len(found) <= len(shapes) + 2


class FakeTerminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_make_demo_runs_its_four_steps_with_one_progress_line(tmp_path):
    """make demo's driver, shortened (40 images, 2 iterations): the steps' output goes to demo.log, the terminal
    gets one line rewritten in place, and the results are where the summary says."""
    shapes_demo = load_shapes_demo()
    terminal = FakeTerminal()
    result = shapes_demo.run(tmp_path / "out", images=40, max_batches=2, line=shapes_demo.ProgressLine(terminal))
    assert terminal.text.count("\n") == 1 and terminal.text.endswith("\n")     # one line, ended once
    shown = terminal.text.split("\r")
    assert [s.split("]")[1].split(":")[0].strip() for s in shown[1:]] == (
        ["dataset", "training", "training", "training", "detector map", "detector test"])
    assert "iteration 2/2" in terminal.text and "images/s, ETA" in terminal.text
    log = open(result["log"]).read()
    assert "2: " in log and " avg, " in log and "mean average precision (mAP@0.50)" in log
    assert "Predicted in" in log
    assert 0 <= result["map"] <= 1
    for key in ("weights", "predictions", "chart"):
        assert os.path.getsize(result[key]) > 0


def test_make_demo_writes_a_line_every_so_often_into_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYDARKNET_DEMO_RANKS", "1")     # one process (tests/test_parallel_train.py runs 2 ranks)
    shapes_demo = load_shapes_demo()
    line = shapes_demo.ProgressLine(sys.stdout, every=3600)
    for i in range(1, 4):
        line.iteration(i, 3, 1.0, 10.0, 5)
    line.show("detector map", "400 validation images")
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "iteration 1/3" in out and "detector map" in out and "\r" not in out
    # a folder Darknet's label rule cannot use: one line, exit status 1
    assert shapes_demo.main([str(tmp_path / "images" / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("make demo: ") and "\n" not in err and "label" in err


def test_save_labels_writes_the_sample_shapes_as_label_lines(tmp_path):
    """detector test -save_labels on a copy of the sample: one label file beside it (label_path's .png -> .txt),
    AlexeyAB's number format, boxes inside the image, and they are the sample's objects."""
    import re
    import shutil
    from pydarknet.data.shapes import SHAPES
    from tests.conftest import run_cli
    image, shapes = sample(12345, 7, size=320)
    folder = tmp_path / "pictures"
    folder.mkdir()
    shutil.copy(REPO / "data" / "shapes-sample.png", folder / "sample.png")
    result = run_cli("detector", "test", REPO / "cfg" / "shapes.data", REPO / "cfg" / "yolov3-tiny-shapes.cfg",
                     REPO / "weights" / "yolov3-tiny-shapes.weights", folder / "sample.png", "-thresh", ".5",
                     "-save_labels", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = (folder / "sample.txt").read_text().splitlines()
    assert lines and all(re.fullmatch(r"\d \d\.\d{4} \d\.\d{4} \d\.\d{4} \d\.\d{4}", line) for line in lines), lines
    size = image.shape[0]
    found = []
    for line in lines:
        k, x, y, w, h = line.split()
        x, y, w, h = (float(v) * size for v in (x, y, w, h))
        assert 0 <= x - w / 2 + 1e-3 and x + w / 2 - 1e-3 <= size and 0 <= y - h / 2 + 1e-3 and y + h / 2 - 1e-3 <= size
        found.append((SHAPES[int(k)], (x - w / 2, y - h / 2, x + w / 2, y + h / 2)))
    matched = sum(any(name == shape.name and iou(box, shape.box) > .5 for name, box in found) for shape in shapes)
    assert matched >= len(shapes) - 1, (found, shapes)
    assert len(found) <= len(shapes) + 2
