"""`classifier train|valid|predict|label` and `dataset shapes-cls`, end to end on files the tests write.

A tiny classifier trains on a small shapes-cls set (its line, its backups by epoch, the Ctrl-C backup, a NaN
stop); valid's accuracy is checked against a count made here from the network's own outputs; predict with the
weights `make demo-classifier` trained names the shape of an image it never saw.
"""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pydarknet.data import shapes_cls
from pydarknet.classifier import class_of, top_k
from pydarknet.cfg import read_names
from pydarknet.cli import main
from pydarknet.network import load_network
from pydarknet.image import center_crop_image, load_image_color
from pydarknet.data.shapes import SHAPES
from tests.conftest import REPO

CFG = """
[net]
batch=16
subdivisions=1
width=32
height=32
channels=3
momentum=0.9
decay=0.0005
learning_rate={rate}
max_batches=6
min_crop=32
max_crop=40
angle=5
hue=.1
saturation=1.5
exposure=1.5

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=5
size=1
stride=1
activation=linear

[avgpool]

[softmax]
"""

# train_classifier's line: `batch, epoch: loss, avg avg, rate rate, t seconds, images images`, then ours
LINE = re.compile(r"^(\d+), (\d+\.\d{3}): (\d+\.\d{6}), (\d+\.\d{6}) avg, \d+\.\d{6} rate, \d+\.\d{6} seconds, "
                  r"(\d+) images, [\d.]+ images/s")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cls")
    return shapes_cls.generate(folder / "set", n=50, size=40, seed=4)


def write_cfg(folder, rate=.05):
    path = folder / "tiny-cls.cfg"
    path.write_text(CFG.format(rate=rate))
    return path


def test_top_k_is_darknets():
    values = np.array([.1, .5, .5, .2, .9, .5], np.float32)
    # ties as utils.c's insertion leaves them: 1 took the first place before 2, and when 4 pushed it down it
    # stayed behind 2, which it does not beat
    assert top_k(values, 3) == [4, 2, 1]
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.random(9)
        assert top_k(v, 4) == list(np.argsort(-v, kind="stable")[:4])


def test_shapes_cls_names_the_class_in_each_path(dataset):
    folder = os.path.dirname(dataset)
    labels = read_names(os.path.join(folder, "labels.txt"))
    assert labels == list(SHAPES)
    paths = open(os.path.join(folder, "train.list")).read().split() + \
        open(os.path.join(folder, "valid.list")).read().split()
    assert len(paths) == 50 and len(open(os.path.join(folder, "valid.list")).read().split()) == 10
    assert all(sum(label in p for label in labels) == 1 for p in paths)
    assert [class_of(p, labels) for p in sorted(paths)] == [i % 5 for i in range(50)]


def test_shapes_cls_refuses_a_folder_that_names_a_class(tmp_path, capsys):
    assert main(["dataset", "shapes-cls", str(tmp_path / "my-circles"), "-n", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "contains 'circle'" in err[0]
    assert not (tmp_path / "my-circles").exists()


def test_train_prints_darknets_line_and_backs_up_each_epoch(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    backup = os.path.join(os.path.dirname(dataset), "backup")
    assert main(["classifier", "train", dataset, str(write_cfg(tmp_path)), "-seed", "1", "-workers", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["tiny-cls", "Learning Rate: 0.05, Momentum: 0.9, Decay: 0.0005"]
    assert "40" in out and "32 40" in out          # the images in the list; the crop sizes
    lines = [LINE.match(line) for line in out if LINE.match(line)]
    assert [int(m[1]) for m in lines] == [1, 2, 3, 4, 5, 6]
    assert [m[2] for m in lines] == [f"{16 * i / 40:.3f}" for i in range(1, 7)]     # epochs: images / 40
    assert [int(m[5]) for m in lines] == [16 * i for i in range(1, 7)]
    # an epoch's weights when seen/N passes an integer (iterations 3 and 5), the final ones at the end
    assert sorted(os.listdir(backup)) == ["tiny-cls.weights", "tiny-cls_1.weights", "tiny-cls_2.weights"]
    assert out[-1] == f"Saved {os.path.join(backup, 'tiny-cls.weights')}"
    assert os.path.getsize("chart.png") > 1000


def valid_lines(stdout):
    return re.findall(r"^(\d+): top 1: (\d\.\d+), top 2: (\d\.\d+)$", stdout, re.M)


def test_valid_equals_an_independent_count(dataset, tmp_path, capsys):
    cfg = write_cfg(tmp_path)
    weights = tmp_path / "w.weights"
    assert main(["randweights", str(cfg), str(weights), "-seed", "3"]) == 0
    capsys.readouterr()
    assert main(["classifier", "valid", dataset, str(cfg), str(weights)]) == 0
    index, top1, top2 = valid_lines(capsys.readouterr().out)[-1]
    folder = os.path.dirname(dataset)
    paths = open(os.path.join(folder, "valid.list")).read().split()
    net = load_network(cfg, weights)
    correct = correct2 = 0
    for path in paths:
        truth = next(j for j, name in enumerate(SHAPES) if name in path)
        out = net.predict(center_crop_image(load_image_color(path), 32, 32)).ravel()
        order = np.argsort(-out.astype(np.float64), kind="stable")
        correct += order[0] == truth
        correct2 += truth in order[:2]
    assert int(index) == len(paths) - 1
    assert float(top1) == pytest.approx(correct / len(paths), abs=1e-6)
    assert float(top2) == pytest.approx(correct2 / len(paths), abs=1e-6)
    assert 0 < correct2 < len(paths)        # random weights: the count is not trivially all or nothing


def test_predict_names_the_shape_of_a_new_image(tmp_path, capsys):
    """The weights make demo-classifier trained, on an image drawn with a seed the dataset never used."""
    data = tmp_path / "shapes-cls.data"
    (tmp_path / "labels.txt").write_text("".join(f"{name}\n" for name in SHAPES))
    data.write_text(f"classes=5\nlabels={tmp_path / 'labels.txt'}\ntop=2\n")
    found = []
    for index in range(5):
        image, cls = shapes_cls.sample(seed=999, index=index, size=64)
        path = tmp_path / f"new{index}.png"
        import cv2
        cv2.imwrite(str(path), image)
        assert main(["classifier", "predict", str(data), str(REPO / "cfg" / "shapes-cls.cfg"),
                     str(REPO / "weights" / "shapes-cls.weights"), str(path)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and all(re.fullmatch(r" ?\d+\.\d\d%: \w+", line) for line in lines), lines
        found.append(lines[0].split(": ")[1] == SHAPES[cls])
    assert sum(found) >= 4, found


def test_label_prints_the_best_class_of_each_test_image(dataset, tmp_path, capsys):
    cfg = write_cfg(tmp_path)
    weights = tmp_path / "w.weights"
    assert main(["randweights", str(cfg), str(weights), "-seed", "3"]) == 0
    capsys.readouterr()
    assert main(["classifier", "label", dataset, str(cfg), str(weights)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 10 and set(out) <= set(SHAPES)


def one_error(capsys, code, argv):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pydarknet: "), err
    return err[0]


def test_bad_input_gets_darknets_message_or_one_line(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path)
    folder = os.path.dirname(dataset)
    labels = os.path.join(folder, "labels.txt")
    # a path that names no class: Darknet's line, counted, and training goes on
    good = open(os.path.join(folder, "train.list")).read().split()
    odd = tmp_path / "odd.png"
    odd.write_bytes(open(good[0], "rb").read())
    mixed = tmp_path / "mixed.list"
    mixed.write_text("\n".join(good + [str(odd)]) + "\n")
    data = tmp_path / "mixed.data"
    data.write_text(f"classes=5\ntrain={mixed}\nlabels={labels}\nbackup={tmp_path / 'backup'}\n")
    assert main(["classifier", "train", str(data), str(cfg), "-max_batches", "1", "-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"Too many or too few labels: 0, {odd}\n" in out
    assert f"1 of 41 images in {mixed} have too many or too few labels" in out
    # nothing but such paths, an empty list, -t beyond the classes: one line each
    only_odd = tmp_path / "odd.list"
    only_odd.write_text(f"{odd}\n")
    data.write_text(f"classes=5\ntrain={only_odd}\nlabels={labels}\nbackup={tmp_path / 'backup'}\n")
    assert "no image path names exactly one of the labels" in one_error(
        capsys, 1, ["classifier", "train", str(data), str(cfg), "-workers", "1"])
    empty = tmp_path / "empty.list"
    empty.write_text("")
    data.write_text(f"classes=5\ntrain={empty}\nvalid={empty}\nlabels={labels}\n")
    assert "the train list is empty" in one_error(capsys, 1, ["classifier", "train", str(data), str(cfg)])
    weights = tmp_path / "w.weights"
    assert main(["randweights", str(cfg), str(weights)]) == 0
    capsys.readouterr()
    assert "the valid list is empty" in one_error(capsys, 1, ["classifier", "valid", str(data), str(cfg),
                                                              str(weights)])
    assert "-t 9" in one_error(capsys, 1, ["classifier", "predict", dataset, str(cfg), str(weights), str(odd),
                                           "-t", "9"])


def test_nan_loss_stops_and_ctrl_c_saves(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["classifier", "train", dataset, str(write_cfg(tmp_path, rate=1e15)), "-workers", "1",
                 "-max_batches", "50"]) == 1
    err = capsys.readouterr().err
    assert "overflow" not in err, err
    last = err.strip().splitlines()[-1]
    assert re.search(r"tiny-cls.cfg: the loss became (nan|inf) at iteration \d+.*: training diverged\. .*lower "
                     r"learning_rate \(now 1e\+15\)", last), last
    backup = os.path.join(os.path.dirname(dataset), "backup")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "pydarknet", "classifier", "train", dataset,
                             str(write_cfg(tmp_path)), "-max_batches", "100000", "-workers", "1", "-chart", ""],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, seen = time.time() + 120, 0
    for line in proc.stdout:
        if LINE.match(line):
            seen += 1
            if seen == 3:
                proc.send_signal(signal.SIGINT)
                break
        assert time.time() < deadline
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"pydarknet: interrupted (saved {os.path.join(backup, 'tiny-cls.backup')})"
    assert os.path.exists(os.path.join(backup, "tiny-cls.backup"))


def test_training_images_are_darknets_augmentation(dataset):
    """load_data_augment's batches: the network's size, values in [0, 1], one label each."""
    from pydarknet.data.augment import Crop
    from pydarknet.data.loader import Loader
    paths = open(os.path.join(os.path.dirname(dataset), "train.list")).read().split()
    with Loader(paths, (32, 32), kind="classification", batch=40, classes=5, labels=list(SHAPES),
                crop=Crop(32, 40, 5, 1.0), seed=3, workers=1) as loader:
        x, truth = loader.next()
    assert x.shape == (40, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert truth.shape == (40, 5) and (truth.sum(1) == 1).all()


def test_rotate_crop_image_against_its_formula():
    """rotate_crop_image: unrotated and unscaled it is the identity; a quarter turn of a square image is rot90
    (shifted by a row: C's centre is at w/2., between pixels); any other view samples the formula's point."""
    from pydarknet.image import rotate_crop_image
    rng = np.random.default_rng(1)
    im = rng.random((3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(rotate_crop_image(im, 0, 1, 9, 9, 0, 0, 1), im)
    turned = rotate_crop_image(im, np.pi / 2, 1, 9, 9, 0, 0, 1)
    np.testing.assert_allclose(turned[:, 1:], np.rot90(im, 1, axes=(1, 2))[:, :-1], atol=1e-5)
    rad, s, dx, dy, aspect = .3, 1.3, 1.5, -.5, .9
    out = rotate_crop_image(im, rad, s, 7, 5, dx, dy, aspect)
    for c, j, i in [(0, 2, 3), (1, 0, 0), (2, 4, 6)]:
        u = (i - 7 / 2) / s * aspect + dx / s * aspect
        v = (j - 5 / 2) / s + dy / s
        x, y = np.cos(rad) * u - np.sin(rad) * v + 4.5, np.sin(rad) * u + np.cos(rad) * v + 4.5
        ix, iy = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - ix, y - iy
        pixel = lambda yy, xx: im[c, yy, xx] if 0 <= yy < 9 and 0 <= xx < 9 else 0.0   # noqa: E731
        expected = ((1 - fy) * (1 - fx) * pixel(iy, ix) + fy * (1 - fx) * pixel(iy + 1, ix)
                    + (1 - fy) * fx * pixel(iy, ix + 1) + fy * fx * pixel(iy + 1, ix + 1))
        assert out[c, j, i] == pytest.approx(expected, abs=1e-5)


def test_a_prefix_at_learning_rate_0_keeps_its_weights(dataset, tmp_path, monkeypatch):
    """Transfer learning's frozen prefix: with learning_rate=0 in its section, a layer's weights, biases and scales
    stay as they were through training steps (its rolling batch-norm statistics move, as in Darknet); the layers
    after it learn."""
    monkeypatch.chdir(tmp_path)
    text = CFG.format(rate=.05).replace("[convolutional]\nbatch_normalize=1",
                                        "[convolutional]\nlearning_rate=0\nbatch_normalize=1", 1)
    cfg = tmp_path / "frozen.cfg"
    cfg.write_text(text)
    start = tmp_path / "start.weights"
    assert main(["randweights", str(cfg), str(start), "-seed", "2"]) == 0
    assert main(["classifier", "train", dataset, str(cfg), str(start), "-max_batches", "4", "-workers", "1",
                 "-chart", ""]) == 0
    before = load_network(cfg, start)
    after = load_network(cfg, os.path.join(os.path.dirname(dataset), "backup", "frozen.weights"))
    frozen, head = before.layers[0], before.layers[2]
    assert frozen.learning_rate_scale == 0
    for name in ("weights", "biases", "scales"):
        np.testing.assert_array_equal(getattr(after.layers[0], name), getattr(frozen, name), err_msg=name)
    assert not np.array_equal(after.layers[0].rolling_mean, frozen.rolling_mean)
    assert np.abs(after.layers[2].weights - head.weights).max() > 1e-4


def test_map_every_reports_the_validation_loss_and_top1(dataset, tmp_path, capsys, monkeypatch):
    """classifier train -map_every K: every K iterations and at the last, the loss per image of an inference pass
    on the valid list's centre crops (here checked in float64: -log of the true class's probability) and the top-1
    that `classifier valid` gives for the same weights."""
    import json
    from pydarknet.classifier import validate_classifier
    from pydarknet.image import center_crop_image, load_image_color
    from pydarknet.network import load_network
    monkeypatch.chdir(tmp_path)
    cfg = write_cfg(tmp_path)
    assert main(["classifier", "train", dataset, str(cfg), "-seed", "1", "-workers", "1", "-map_every", "4"]) == 0
    out = capsys.readouterr().out
    reports = [r for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if "validation_loss" in r]
    assert [r["iteration"] for r in reports] == [4, 6]
    assert f"validation loss: {reports[-1]['validation_loss']:f}, top-1: {reports[-1]['top1']:f}" in out
    weights = os.path.join(os.path.dirname(dataset), "backup", "tiny-cls.weights")
    top1, _ = validate_classifier(dataset, str(cfg), weights, out=open(os.devnull, "w"))
    assert reports[-1]["top1"] == top1
    net = load_network(cfg, weights)
    valid = [line.strip() for line in open(os.path.join(os.path.dirname(dataset), "valid.list")) if line.strip()]
    names = [line.strip() for line in open(os.path.join(os.path.dirname(dataset), "labels.txt")) if line.strip()]
    losses = []
    for path in valid:
        p = np.asarray(net.predict(center_crop_image(load_image_color(path), net.w, net.h)), np.float64).ravel()
        losses.append(-np.log(p[next(j for j, name in enumerate(names) if name in path)]))
    assert reports[-1]["validation_loss"] == pytest.approx(np.mean(losses), rel=1e-5)
