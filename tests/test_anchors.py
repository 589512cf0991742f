"""`pydarknet detector calc_anchors`, run as a user runs it, on train lists and label files written here (label
reading needs no images: label_path only maps the path)."""
import io
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

PLANTED = np.array([(30, 60), (100, 80), (250, 300)], float)    # pixels at 416 x 416, smallest area first


def write_dataset(folder, sizes, classes, net=416, per_image=4):
    """A .data file, a train list and one label file per `per_image` boxes, boxes of the given pixel sizes."""
    (folder / "labels").mkdir()
    lines = []
    for start in range(0, len(sizes), per_image):
        name = f"img{start // per_image:04d}"
        rows = [f"{cls} 0.5 0.5 {w / net:.6f} {h / net:.6f}"
                for (w, h), cls in zip(sizes[start:start + per_image], classes[start:start + per_image])]
        (folder / "labels" / f"{name}.txt").write_text("\n".join(rows) + "\n")
        lines.append(str(folder / "images" / f"{name}.jpg"))
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    (folder / "obj.data").write_text(f"classes=3\ntrain={folder / 'train.txt'}\n")
    return folder / "obj.data"


def planted_dataset(folder, n=200, seed=1):
    """n boxes around each planted size, jittered by up to 3%; class = which size."""
    rng = np.random.default_rng(seed)
    sizes = np.repeat(PLANTED, n, axis=0) * rng.uniform(.97, 1.03, (3 * n, 2))
    classes = np.repeat([0, 1, 2], n)
    order = rng.permutation(3 * n)
    return write_dataset(folder, sizes[order], classes[order]), sizes


def calc_anchors(folder, *flags):
    return subprocess.run([sys.executable, "-m", "pydarknet", "detector", "calc_anchors", "obj.data", *flags],
                          cwd=folder, capture_output=True, text=True)


def printed(stdout, key):
    (value,) = re.findall(rf"^{key} = (.*)$", stdout, re.M)
    return value


def parse_anchors(text):
    return np.array([float(v) for v in text.replace(",", " ").split()]).reshape(-1, 2)


def mean_best_iou(sizes, anchors):
    """The oracle: for each box, the best corner-aligned IoU over the anchors, by a plain loop."""
    best = []
    for w, h in sizes:
        ious = [min(w, aw) * min(h, ah) / (w * h + aw * ah - min(w, aw) * min(h, ah)) for aw, ah in anchors]
        best.append(max(ious))
    return 100 * np.mean(best)


def test_recovers_planted_sizes_and_writes_both_files(tmp_path):
    planted_dataset(tmp_path)
    run = calc_anchors(tmp_path, "-num_of_clusters", "3", "-width", "416", "-height", "416")
    assert run.returncode == 0, run.stderr
    line = printed(run.stdout, "anchors")
    assert (tmp_path / "anchors.txt").read_text() == line
    assert re.fullmatch(r"( *\d+, *\d+, ){2} *\d+, *\d+", line)      # %3.0f,%3.0f joined by ', '
    np.testing.assert_allclose(parse_anchors(line), PLANTED, rtol=.05)
    assert (tmp_path / "counters_per_class.txt").read_text() == "counters_per_class = 200, 200, 200"
    assert printed(run.stdout, "counters_per_class") == "200, 200, 200"


def test_same_seed_same_anchors_and_avg_iou_matches_oracle(tmp_path):
    _, sizes = planted_dataset(tmp_path)
    runs = []
    for _ in range(2):
        run = calc_anchors(tmp_path, "-width", "416", "-height", "416", "-seed", "7")
        assert run.returncode == 0, run.stderr
        runs.append((tmp_path / "anchors.txt").read_text())
    assert runs[0] == runs[1]
    anchors = parse_anchors(runs[0])
    assert anchors.shape == (5, 2)
    areas = anchors[:, 0] * anchors[:, 1]
    assert np.all(np.diff(areas) >= 0)
    avg_iou = float(printed(run.stdout, "avg IoU").rstrip(" %"))
    # the printed anchors are rounded to whole pixels, so the oracle on them differs a little
    assert avg_iou == pytest.approx(mean_best_iou(sizes, anchors), abs=.5)
    assert 90 < avg_iou <= 100


def test_python_function_matches_oracle(tmp_path, monkeypatch):
    from pydarknet.detector.anchors import calc_anchors as calc
    datacfg, sizes = planted_dataset(tmp_path, n=50)
    monkeypatch.chdir(tmp_path)
    anchors, avg_iou = calc(str(datacfg), clusters=3, width=416, height=416, out=io.StringIO())
    assert anchors.shape == (3, 2)
    # the boxes as read (the label file's 6 decimals, as float32, scaled back), so the oracle sees what k-means saw
    read = np.float32(np.round(sizes / 416, 6)).astype(float) * 416
    assert avg_iou == pytest.approx(mean_best_iou(read, anchors), rel=1e-9)


def test_small_width_prints_four_decimals(tmp_path):
    planted_dataset(tmp_path, n=50)
    run = calc_anchors(tmp_path, "-num_of_clusters", "3", "-width", "13", "-height", "13")
    assert run.returncode == 0, run.stderr
    line = printed(run.stdout, "anchors")
    assert (tmp_path / "anchors.txt").read_text() == line
    assert re.fullmatch(r"(\d+\.\d{4},\d+\.\d{4}, ){2}\d+\.\d{4},\d+\.\d{4}", line)
    np.testing.assert_allclose(parse_anchors(line), PLANTED * 13 / 416, rtol=.05)


def test_missing_width_is_a_usage_error(tmp_path):
    planted_dataset(tmp_path, n=5)
    run = calc_anchors(tmp_path, "-height", "416")
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "-width" in run.stderr


def test_empty_train_list_names_the_list(tmp_path):
    planted_dataset(tmp_path, n=5)
    (tmp_path / "train.txt").write_text("\n")
    run = calc_anchors(tmp_path, "-width", "416", "-height", "416")
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "train.txt" in run.stderr
    assert "Traceback" not in run.stderr


def test_label_line_of_four_numbers_names_file_and_line(tmp_path):
    planted_dataset(tmp_path, n=5)
    (tmp_path / "labels" / "img0001.txt").write_text("0 0.5 0.5 0.1 0.2\n0 0.5 0.5 0.1\n")
    run = calc_anchors(tmp_path, "-width", "416", "-height", "416")
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'labels' / 'img0001.txt'}:2" in run.stderr
    assert "Traceback" not in run.stderr


def test_show_writes_a_readable_cloud(tmp_path):
    planted_dataset(tmp_path, n=20)
    run = calc_anchors(tmp_path, "-num_of_clusters", "3", "-width", "416", "-height", "416", "-show")
    assert run.returncode == 0, run.stderr
    image = cv2.imread(str(tmp_path / "cloud.png"))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert not list(tmp_path.glob("*.tmp"))
