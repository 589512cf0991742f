"""`pydarknet dataset check`, run as a user runs it, on a dataset with one planted defect of each kind."""
import cv2
import numpy as np
import pytest

from conftest import run_cli

CLEAN = "0 0.5 0.5 0.2 0.3\n1 0.25 0.75 0.1 0.1\n"
# image name -> (label text or None for no label file, the line a defect is on, the words its report holds)
DEFECTS = {
    "four_numbers": ("0 0.5 0.5 0.2 0.3\n1 0.5 0.5 0.2\n", 2, "got 4 fields"),
    "class_range": ("3 0.5 0.5 0.2 0.3\n", 1, "class 3 out of range"),
    "x_outside": ("0 1.5 0.5 0.2 0.3\n", 1, "outside [0, 1]"),
    "both_zero": ("0 0.5 0.5 0.2 0.3\n\n1 0 0 0.2 0.3\n", 3, "both 0"),
    "w_zero": ("0 0.5 0.5 0 0.3\n", 1, "not in (0, 1]"),
    "h_above_one": ("0 0.5 0.5 0.2 1.2\n", 1, "not in (0, 1]"),
    "no_label": (None, None, "cannot be opened"),
}


def write_dataset(root, defects=True, cfg=None):
    """images/*.png (tiny, real), labels/*.txt, train/valid lists and a .data file with 3 classes."""
    (root / "images").mkdir()
    (root / "labels").mkdir()
    names = [f"clean{i}" for i in range(4)] + (list(DEFECTS) + ["garbage", "missing"] if defects else [])
    for name in names:
        if name != "missing":
            image = root / "images" / f"{name}.png"
            if name == "garbage":
                image.write_bytes(b"not a png at all")
            else:
                cv2.imwrite(str(image), np.full((8, 8, 3), 100, np.uint8))
        text = DEFECTS[name][0] if name in DEFECTS else CLEAN
        if text is not None:
            (root / "labels" / f"{name}.txt").write_text(text)
    paths = [str(root / "images" / f"{name}.png") for name in names]
    (root / "train.txt").write_text("\n".join(paths[:-3]) + "\n")
    (root / "valid.txt").write_text("\n".join(paths[-3:]) + "\n")
    (root / "my.data").write_text(f"classes=3\ntrain={root / 'train.txt'}\nvalid={root / 'valid.txt'}\n")
    return root / "my.data"


def report_lines(result):
    return [line for line in result.stdout.splitlines() if line.startswith("/")]


def test_check_names_every_planted_defect_and_no_clean_image(tmp_path):
    data = write_dataset(tmp_path)
    result = run_cli("dataset", "check", data, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = report_lines(result)
    for name, (_, line, words) in DEFECTS.items():
        label = tmp_path / "labels" / f"{name}.txt"
        where = f"{label}:{line}" if line else str(label)
        assert any(f"images/{name}.png: {where}" in text and words in text for text in lines), (name, lines)
    assert any("images/garbage.png: the image cannot be decoded" in text for text in lines)
    assert any("images/missing.png: the image is missing" in text for text in lines)
    assert not any("clean" in text for text in lines)
    assert len(lines) == len(DEFECTS) + 2
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{len(DEFECTS) + 2} problems (") and "image missing: 1" in summary
    bad = (tmp_path / "bad.list").read_text().splitlines()
    assert sorted(bad) == sorted([str(tmp_path / "images" / "garbage.png"), str(tmp_path / "images" / "missing.png"),
                                  str(tmp_path / "labels" / "no_label.txt")])
    bad_labels = (tmp_path / "bad_label.list").read_text().splitlines()
    assert len(bad_labels) == 6 and all(line.startswith(str(tmp_path / "labels")) and line.endswith('"')
                                        for line in bad_labels)
    assert any(line.startswith(f'{tmp_path / "labels" / "class_range.txt"} "class 3 out of range')
               for line in bad_labels)


def test_check_fast_does_not_decode_and_a_clean_dataset_exits_0(tmp_path):
    data = write_dataset(tmp_path)
    fast = run_cli("dataset", "check", data, "-fast", cwd=tmp_path)
    assert fast.returncode == 1 and not any("garbage" in line for line in report_lines(fast))
    clean = tmp_path / "clean"
    clean.mkdir()
    result = run_cli("dataset", "check", write_dataset(clean, defects=False), cwd=clean)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1] == "no problems" and not (clean / "bad.list").exists()


def test_check_reads_labels_by_the_cfgs_head(tmp_path):
    """YOLOv1's [detection] reads labels as fill_truth_region does: no 'raw' -> 'labels' rule."""
    root = tmp_path / "raw"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(CLEAN)           # where the detection rule looks
    (tmp_path / "list.txt").write_text(f"{root / 'a.png'}\n")
    (tmp_path / "v1.data").write_text(f"classes=3\ntrain={tmp_path / 'list.txt'}\n")
    (tmp_path / "v1.cfg").write_text("[net]\nwidth=64\nheight=64\nchannels=3\n[connected]\noutput=10\n[detection]\n"
                                     "classes=3\n")
    (tmp_path / "v3.cfg").write_text("[net]\nwidth=64\nheight=64\nchannels=3\n[yolo]\nmask=0\nanchors=1,1\nclasses=3\n")
    assert run_cli("dataset", "check", tmp_path / "v1.data", tmp_path / "v3.cfg", cwd=tmp_path).returncode == 0
    v1 = run_cli("dataset", "check", tmp_path / "v1.data", tmp_path / "v1.cfg", cwd=tmp_path)
    assert v1.returncode == 1 and f"{root / 'a.txt'}: the label file cannot be opened" in v1.stdout


@pytest.mark.parametrize("defect", ["no data file", "no lists", "empty list"])
def test_check_bad_input_is_one_line(tmp_path, defect):
    data = tmp_path / "my.data"
    if defect == "no lists":
        data.write_text("classes=2\n")
    elif defect == "empty list":
        (tmp_path / "train.txt").write_text("\n")
        data.write_text(f"classes=2\ntrain={tmp_path / 'train.txt'}\n")
    result = run_cli("dataset", "check", data, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (str(tmp_path / "train.txt") if defect == "empty list" else str(data)) in result.stderr


def test_summary_counts_in_english():
    """'1 problem', not '1 problems'."""
    from pydarknet.data.check import Problem, summary
    one = [Problem("image missing", "a.jpg", None, None, "no such file")]
    assert summary(one, fast=True).startswith("1 problem (image missing: 1)")
    assert summary(one * 2, fast=True).startswith("2 problems (image missing: 2)")
