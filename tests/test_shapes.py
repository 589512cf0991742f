"""Tests of pydarknet.shapes: the embedded detection dataset, its files in Darknet's layout, and its labels."""
import os

import cv2
import numpy as np
import pytest

from pydarknet.data import shapes
from pydarknet.cfg import read_data, read_names
from pydarknet.cli import main

SIZE, N, SEED = 160, 60, 7


def darknet_label_path(path):
    """fill_truth_detection's rule, written out as data.c has it: each find_replace changes the first match only."""
    for orig, rep in (("images", "labels"), ("JPEGImages", "labels"), ("raw", "labels"),
                      (".jpg", ".txt"), (".png", ".txt"), (".JPG", ".txt"), (".JPEG", ".txt")):
        i = path.find(orig)
        if i >= 0:
            path = path[:i] + rep + path[i + len(orig):]
    return path


def read_labels(path):
    """Rows of (class, x, y, w, h) from a label file; checks every line has Darknet's five fields."""
    rows = []
    for line in open(path).read().splitlines():
        fields = line.split()
        assert len(fields) == 5, line
        rows.append((int(fields[0]), *map(float, fields[1:])))
    return rows


def pixel_box(row, size):
    """A label row back to pixel (x0, y0, x1, y1), x1 and y1 exclusive."""
    _, x, y, w, h = row
    return tuple(int(round(v * size)) for v in (x - w / 2, y - h / 2, x + w / 2, y + h / 2))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("shapeset")
    return outdir, shapes.generate(outdir, n=N, size=SIZE, seed=SEED)


def files_of(outdir):
    return {p.relative_to(outdir).as_posix(): p.read_bytes() for p in sorted(outdir.rglob("*")) if p.is_file()}


# ---- determinism ----

def test_same_seed_same_files_other_seed_other_files(tmp_path):
    def made(name, **kwargs):
        shapes.generate(tmp_path / name, n=12, size=96, **kwargs)
        files = files_of(tmp_path / name)
        return {k: v.replace(str(tmp_path / name).encode(), b"ROOT") for k, v in files.items()}

    a, b, c = made("a", seed=3), made("b", seed=3, workers=1), made("c", seed=4)
    assert len([k for k in a if k.startswith("images/")]) == 12
    assert a == b       # the thread count does not change the files either
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith(("images/", "labels/")))


def test_each_picture_is_a_stored_png_of_the_drawn_pixels(tmp_path):
    """Uncompressed (training decodes each one again and again), yet PNG, lossless: the pixels sample() drew.
    (The name avoids "images": generate refuses an output folder whose path holds it.)"""
    shapes.generate(tmp_path, n=2, size=64, seed=5)
    path = tmp_path / "images" / "00001.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size >= 64 * 64 * 3
    drawn, _ = shapes.sample(5, 1, 64, shapes.SHAPES)
    assert np.array_equal(cv2.imread(str(path)), drawn)


def test_image_k_does_not_depend_on_n(tmp_path):
    shapes.generate(tmp_path / "few", n=3, size=64, seed=1)
    shapes.generate(tmp_path / "more", n=5, size=64, seed=1)
    for name in ("images/00002.png", "labels/00002.txt"):
        assert (tmp_path / "few" / name).read_bytes() == (tmp_path / "more" / name).read_bytes()


# ---- the files, as Darknet reads them ----

def test_data_file_paths_exist_and_split_sizes(dataset):
    outdir, result = dataset
    data = read_data(outdir / "shapes.data")
    assert data.int("classes") == len(shapes.SHAPES) == 5
    assert data["eval"] == "voc"
    for key in ("train", "valid", "names", "backup"):
        assert os.path.isabs(data[key]) and os.path.exists(data[key]), key
    assert os.path.isdir(data["backup"])
    assert read_names(data["names"]) == list(shapes.SHAPES)
    train = open(data["train"]).read().splitlines()
    valid = open(data["valid"]).read().splitlines()
    assert (len(train), len(valid)) == (N - round(N * 0.2), round(N * 0.2))
    assert not set(train) & set(valid)
    assert sorted(train + valid) == sorted(str(p) for p in (outdir / "images").glob("*.png"))
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in train + valid)
    assert (result.train, result.valid, result.data) == (train, valid, str(outdir / "shapes.data"))


def test_split_sizes_follow_the_fraction(tmp_path):
    result = shapes.generate(tmp_path / "d", n=10, size=48, seed=0, valid_fraction=0.5)
    assert (len(result.train), len(result.valid)) == (5, 5)
    result = shapes.generate(tmp_path / "e", n=3, size=48, seed=0, valid_fraction=0.1)
    assert (len(result.train), len(result.valid)) == (2, 1)   # at least one image each side


def test_label_path_by_darknets_rule(dataset):
    outdir, result = dataset
    for path in result.train + result.valid:
        label = darknet_label_path(path)
        assert label != path and label.endswith(".txt") and os.path.isfile(label), label
        assert shapes.label_path(path) == label
    assert shapes.label_path("/a/raw/images/x.png") == "/a/labels/labels/x.txt"
    assert shapes.label_path("/d/JPEGImages/x.JPEG") == "/d/labels/x.txt"


@pytest.mark.parametrize("folder", ["my_images", "drawn"])
def test_refuses_a_folder_that_darknets_rule_would_break(tmp_path, folder):
    with pytest.raises(ValueError, match="Darknet would look for labels"):
        shapes.generate(tmp_path / folder / "set", n=1, size=64)
    assert not (tmp_path / folder).exists()


def test_labels_parse_and_boxes_lie_inside_the_image(dataset):
    outdir, _ = dataset
    lines = 0
    for path in sorted((outdir / "labels").glob("*.txt")):
        text = path.read_text()
        rows = read_labels(path)
        assert 1 <= len(rows) <= shapes.MAX_OBJECTS, path
        lines += len(rows)
        for line, (cls, x, y, w, h) in zip(text.splitlines(), rows):
            assert line == "%d %.6f %.6f %.6f %.6f" % (cls, x, y, w, h)
            assert 0 <= cls < len(shapes.SHAPES)
            assert w > 0 and h > 0
            assert -1e-6 <= x - w / 2 and x + w / 2 <= 1 + 1e-6, line
            assert -1e-6 <= y - h / 2 and y + h / 2 <= 1 + 1e-6, line
    assert lines > 2 * N


# ---- the labels fit the pictures ----

def test_files_are_what_sample_draws(dataset):
    outdir, _ = dataset
    for i in (0, 1, N - 1):
        image, objects = shapes.sample(SEED, i, SIZE)
        assert np.array_equal(cv2.imread(str(outdir / "images" / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED), image)
        rows = read_labels(outdir / "labels" / f"{i:05d}.txt")
        assert [r[0] for r in rows] == [s.cls for s in objects]
        assert [pixel_box(r, SIZE) for r in rows] == [s.box for s in objects]


def test_each_box_fits_its_object(dataset):
    """On images whose boxes are apart: the object's colour fills its box, touches all four of its sides,
    and is absent from the 2 pixels just outside it."""
    outdir, _ = dataset
    checked = 0
    for i in range(N):
        image = cv2.imread(str(outdir / "images" / f"{i:05d}.png")).astype(int)
        boxes = [pixel_box(r, SIZE) for r in read_labels(outdir / "labels" / f"{i:05d}.txt")]
        _, objects = shapes.sample(SEED, i, SIZE)
        grown = [(x0 - 3, y0 - 3, x1 + 3, y1 + 3) for x0, y0, x1, y1 in boxes]
        apart = all(a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
                    for j, a in enumerate(grown) for b in grown[j + 1:])
        if not apart:
            continue
        for (x0, y0, x1, y1), s in zip(boxes, objects):
            near = np.abs(image - np.array(s.colour)).max(2) <= 2 * shapes.NOISE
            inside = near[y0:y1, x0:x1]
            assert inside.mean() > 0.25, (i, s)
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any(), (i, s)
            margin = np.zeros((SIZE, SIZE), bool)
            margin[max(y0 - 2, 0):y1 + 2, max(x0 - 2, 0):x1 + 2] = True
            margin[y0:y1, x0:x1] = False
            assert not near[margin].any(), (i, s)
            ring = image[margin]
            # the colour stands out from what is around the box: RGB distance 90, less what noise of +-6 takes away
            contrast = np.sqrt(((ring - s.colour) ** 2).sum(1)).min() if ring.size else np.inf
            assert contrast >= 90 - 6 * np.sqrt(3), (i, s, contrast)
            checked += 1
    assert checked >= 30


def test_occlusion_overlap_border_and_sizes():
    objects = [s for i in range(150) for s in shapes.sample(11, i, SIZE)[1]]
    visible = np.array([s.visible for s in objects])
    assert visible.min() >= 1 - shapes.MAX_OCCLUDED
    assert (visible < 0.98).mean() > 0.05            # some objects are partly hidden
    inside = np.array([s.inside for s in objects])
    assert inside.min() >= shapes.MIN_INSIDE
    assert 0.02 < (inside < 0.95).mean() < 0.2       # a few objects are cut by the border
    touching = np.array([min(s.box[:2]) == 0 or max(s.box[2:]) == SIZE for s in objects])
    assert touching[inside < 1].all() and 0.03 < touching.mean() < 0.3
    sides = np.array([max(s.box[2] - s.box[0], s.box[3] - s.box[1]) for s in objects]) / SIZE
    assert sides.min() < 0.12 and sides.max() > 0.5 and 0.15 < np.median(sides) < 0.35


def test_classes_are_roughly_balanced():
    counts = np.bincount([s.cls for i in range(300) for s in shapes.sample(2, i, 96)[1]], minlength=5)
    assert counts.sum() > 600
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean(), counts


def test_a_subset_of_classes(tmp_path):
    result = shapes.generate(tmp_path / "two", n=8, size=64, seed=0, classes=("ring", "cross"))
    assert read_names(tmp_path / "two" / "shapes.names") == ["ring", "cross"]
    assert set(result.counts) == {"ring", "cross"} and sum(result.counts.values()) > 0
    classes = {r[0] for p in (tmp_path / "two" / "labels").glob("*.txt") for r in read_labels(p)}
    assert classes <= {0, 1}
    with pytest.raises(ValueError, match="classes"):
        shapes.generate(tmp_path / "bad", n=1, classes=("circle", "hexagon"))


# ---- the command line ----

def test_main_writes_the_dataset_and_prints_one_line(tmp_path, capsys):
    assert main(["dataset", "shapes", str(tmp_path / "cli"), "-n", "6", "-size", "64", "-seed", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and str(tmp_path / "cli" / "shapes.data") in out
    assert "6 images 64x64" in out and "circle" in out
    assert len(list((tmp_path / "cli" / "images").glob("*.png"))) == 6
    assert cv2.imread(str(tmp_path / "cli" / "images" / "00005.png")).shape == (64, 64, 3)
    # flags before the folder, as Darknet's find_int_arg allows
    assert main(["dataset", "shapes", "-seed", "2", "-n", "6", "-size", "64", str(tmp_path / "cli2")]) == 0
    assert files_of(tmp_path / "cli" / "labels") == files_of(tmp_path / "cli2" / "labels")


@pytest.mark.parametrize("argv", [[], ["a", "b"], ["{}", "-n"], ["{}", "-n", "x"], ["{}", "-n", "0"],
                                  ["{}", "-size", "8"], ["{}", "-bogus", "1"], ["{}/images"]])
def test_main_bad_arguments(tmp_path, capsys, argv):
    argv = [a.format(tmp_path / "out") for a in argv]
    assert main(["dataset", "shapes"] + argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "shapes" in captured.err
    assert not (tmp_path / "out" / "shapes.data").exists()


@pytest.mark.parametrize("verb", ["shapes", "shapes-cls"])
@pytest.mark.parametrize("word", ["-h", "-help", "--help"])
def test_generators_help_lists_their_flags(tmp_path, capsys, verb, word):
    """The generators' help is every command's --help (the usage line and each flag with its default); -h and -help
    still ask for it, as they did when the generators read their own words."""
    assert main(["dataset", verb, str(tmp_path / "out"), word]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: pydarknet dataset {verb} OUTDIR") and "-size" in out and "-seed" in out
    assert not (tmp_path / "out").exists()
