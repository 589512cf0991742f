"""`pydarknet dataset from-voc | from-coco`, run as a user runs them, on datasets the tests write."""
import json
import os

import pytest

from conftest import REPO, run_cli
from pydarknet.cfg import read_data, read_names
from pydarknet.data.voc import VOC_NAMES

# year -> split -> {id: (width, height, [(name, difficult, xmin, xmax, ymin, ymax)])}
VOC = {
    "2007": {
        "train": {"000005": (500, 375, [("chair", 0, 263, 324, 211, 339), ("chair", 1, 5, 67, 237, 374)]),
                  "000007": (500, 333, [("car", 0, 141, 500, 50, 330)])},
        "val": {"000009": (500, 375, [("horse", 0, 69, 471, 172, 336), ("person", 0, 150, 263, 141, 336),
                                      ("unicorn", 0, 10, 20, 10, 20)])},
        "test": {"000001": (353, 500, [("dog", 0, 48, 195, 240, 371), ("person", 0, 8, 352, 12, 498)])},
    },
    "2012": {
        "train": {"2008_000008": (500, 442, [("horse", 0, 53, 471, 87, 420), ("person", 1, 158, 289, 44, 167)])},
        "val": {"2008_000009": (500, 375, [("cow", 0, 217, 259, 117, 145)])},
    },
}


def write_voc(root, years):
    """A VOCdevkit with Annotations, JPEGImages (empty files), the split lists and a per-class list beside them."""
    for year, splits in years.items():
        base = root / f"VOC{year}"
        for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        for split, images in splits.items():
            (base / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in images))
            (base / "ImageSets/Main" / f"dog_{split}.txt").write_text("".join(f"{i} -1\n" for i in images))
            for image_id, (width, height, objects) in images.items():
                (base / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"")
                xml = "".join(f"<object><name>{name}</name><pose>Left</pose><difficult>{hard}</difficult><bndbox>"
                              f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                              for name, hard, x0, x1, y0, y1 in objects)
                (base / "Annotations" / f"{image_id}.xml").write_text(
                    f"<annotation><filename>{image_id}.jpg</filename><size><width>{width}</width><height>{height}"
                    f"</height><depth>3</depth></size>{xml}</annotation>")


def expected_labels(width, height, objects, difficult=False):
    """voc_label.py's numbers, worked out here from the planted corners."""
    out = []
    for name, hard, x0, x1, y0, y1 in objects:
        if name in VOC_NAMES and (difficult or not hard):
            out.append((VOC_NAMES.index(name), ((x0 + x1) / 2 - 1) / width, ((y0 + y1) / 2 - 1) / height,
                        (x1 - x0) / width, (y1 - y0) / height))
    return out


def read_label_file(path):
    return [(int(line.split()[0]), *map(float, line.split()[1:])) for line in path.read_text().splitlines()]


def assert_labels(devkit, years, difficult=False):
    for year, splits in years.items():
        for images in splits.values():
            for image_id, (width, height, objects) in images.items():
                got = read_label_file(devkit / f"VOC{year}" / "labels" / f"{image_id}.txt")
                want = expected_labels(width, height, objects, difficult)
                assert [g[0] for g in got] == [w[0] for w in want], image_id
                for g, w in zip(got, want):
                    assert g[1:] == pytest.approx(w[1:], abs=1e-6), image_id


def listed(path):
    return path.read_text().splitlines()


def test_voc_names_are_the_projects_voc_names():
    assert read_names(REPO / "data" / "voc.names") == list(VOC_NAMES)


def test_from_voc_writes_voc_label_numbers_and_the_lists(tmp_path):
    devkit, out = tmp_path / "VOCdevkit", tmp_path / "out"
    write_voc(devkit, VOC)
    result = run_cli("dataset", "from-voc", devkit, out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_labels(devkit, VOC)
    image = lambda year, i: str(devkit / f"VOC{year}" / "JPEGImages" / f"{i}.jpg")   # noqa: E731
    assert listed(out / "valid.txt") == [image("2007", "000001")]
    assert sorted(listed(out / "train.txt")) == sorted(image(y, i) for y in VOC for s in VOC[y] if s != "test"
                                                       for i in VOC[y][s])
    data = read_data(out / "voc.data")
    assert data.int("classes") == 20 and data["train"] == str(out / "train.txt")
    assert data["valid"] == str(out / "valid.txt") and read_names(data["names"]) == list(VOC_NAMES)
    assert "objects" in result.stdout and not (devkit / "VOC2007" / "labels" / "dog_train.txt").exists()


def test_from_voc_reports_a_missing_image_and_an_unknown_name(tmp_path):
    """Checked before writing, one line each: an image its list names but JPEGImages lacks (left out of the lists)
    and, with VOC's classes, an object of another name (the planted 'unicorn'); with -names FILE such objects are
    the user's choice: counted, not listed."""
    devkit, out = tmp_path / "VOCdevkit", tmp_path / "voc"
    write_voc(devkit, VOC)
    gone = devkit / "VOC2007" / "JPEGImages" / "000007.jpg"
    gone.unlink()
    result = run_cli("dataset", "from-voc", devkit, out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    train_list = devkit / "VOC2007" / "ImageSets" / "Main" / "train.txt"
    assert lines[0] == f"{gone}: missing (named by {train_list}); left out of the lists"
    assert lines[1].startswith(str(devkit / "VOC2007" / "Annotations" / "000009.xml")) and "'unicorn'" in lines[1]
    assert "2 difficult and 1 of other classes skipped; 1 listed image missing, left out" in result.stdout
    assert str(gone) not in (out / "train.txt").read_text()
    assert not (devkit / "VOC2007" / "labels" / "000007.txt").exists()
    names = tmp_path / "mine.names"
    names.write_text("chair\nhorse\n")
    result = run_cli("dataset", "from-voc", devkit, tmp_path / "mine", "-names", names, cwd=tmp_path)
    assert result.returncode == 0 and "unicorn" not in result.stderr and result.stderr.count("\n") == 1
    assert "of other classes skipped" in result.stdout and " 0 of other classes" not in result.stdout


def test_from_voc_keeps_difficult_objects_with_the_flag_and_reads_a_names_file(tmp_path):
    devkit, out = tmp_path / "VOCdevkit", tmp_path / "out"
    write_voc(devkit, VOC)
    assert run_cli("dataset", "from-voc", devkit, out, "-difficult", cwd=tmp_path).returncode == 0
    assert_labels(devkit, VOC, difficult=True)
    names = tmp_path / "two.names"
    names.write_text("person\nchair\n")
    assert run_cli("dataset", "from-voc", devkit, out, "-names", names, cwd=tmp_path).returncode == 0
    assert read_label_file(devkit / "VOC2007" / "labels" / "000009.txt")[0][0] == 0        # person, now class 0
    assert [line[0] for line in read_label_file(devkit / "VOC2007" / "labels" / "000005.txt")] == [1]
    assert read_data(out / "voc.data").int("classes") == 2


def test_from_voc_without_a_test_list_validates_on_the_last_years_val(tmp_path):
    devkit, out = tmp_path / "VOCdevkit", tmp_path / "out"
    years = {"2007": {s: VOC["2007"][s] for s in ("train", "val")}, "2012": VOC["2012"]}
    write_voc(devkit, years)
    assert run_cli("dataset", "from-voc", devkit, out, cwd=tmp_path).returncode == 0
    val = str(devkit / "VOC2012" / "JPEGImages" / "2008_000009.jpg")
    assert listed(out / "valid.txt") == [val]
    assert val not in listed(out / "train.txt") and len(listed(out / "train.txt")) == 4


@pytest.mark.parametrize("defect", ["malformed xml", "no voc folder", "empty list", "no size"])
def test_from_voc_bad_input_is_one_line_and_writes_nothing(tmp_path, defect):
    devkit, out = tmp_path / "VOCdevkit", tmp_path / "out"
    write_voc(devkit, VOC)
    culprit = {"malformed xml": devkit / "VOC2012" / "Annotations" / "2008_000009.xml",
               "no voc folder": devkit,
               "empty list": devkit / "VOC2012" / "ImageSets" / "Main" / "val.txt",
               "no size": devkit / "VOC2007" / "Annotations" / "000007.xml"}[defect]
    if defect == "malformed xml":
        culprit.write_text("<annotation><size><width>5</width></size")
    elif defect == "no voc folder":
        for year in VOC:
            os.rename(devkit / f"VOC{year}", tmp_path / f"VOC{year}")
    elif defect == "empty list":
        culprit.write_text("\n")
    else:
        culprit.write_text("<annotation><object><name>car</name></object></annotation>")
    result = run_cli("dataset", "from-voc", devkit, out, cwd=tmp_path)
    assert result.returncode == 1
    assert str(culprit) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not out.exists() and not any(devkit.glob("VOC*/labels/*"))


def test_from_voc_refuses_a_path_whose_labels_would_land_outside_it(tmp_path):
    devkit, out = tmp_path / "raw" / "VOCdevkit", tmp_path / "out"        # Darknet's "raw" -> "labels"
    write_voc(devkit, VOC)
    result = run_cli("dataset", "from-voc", devkit, out, cwd=tmp_path)
    assert result.returncode == 1 and "outside" in result.stderr and "Traceback" not in result.stderr


COCO_CATEGORIES = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 7, "name": "train"},
                   {"id": 3, "name": "car"}]


def write_coco(tmp_path, images, annotations, categories=COCO_CATEGORIES, name="instances.json"):
    imagedir = tmp_path / "images_in"
    imagedir.mkdir(exist_ok=True)
    for image in images:
        (imagedir / image["file_name"]).write_bytes(b"jpeg")
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path, imagedir


def test_from_coco_classes_in_id_order_boxes_relative_crowd_skipped(tmp_path):
    images = [{"id": 11, "file_name": "a.jpg", "width": 640, "height": 480},
              {"id": 12, "file_name": "b.jpg", "width": 300, "height": 200},
              {"id": 13, "file_name": "empty.jpg", "width": 100, "height": 100}]
    annotations = [{"id": 1, "image_id": 11, "category_id": 7, "bbox": [10.5, 20, 100, 50], "iscrowd": 0},
                   {"id": 2, "image_id": 11, "category_id": 90, "bbox": [0, 0, 640, 480], "iscrowd": 1},
                   {"id": 3, "image_id": 12, "category_id": 1, "bbox": [150, 100, 30, 40], "iscrowd": 0},
                   {"id": 4, "image_id": 12, "category_id": 90, "bbox": [1, 2, 3, 4]}]
    instances, imagedir = write_coco(tmp_path, images, annotations)
    out = tmp_path / "coco"
    result = run_cli("dataset", "from-coco", instances, imagedir, out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_names(out / "coco.names") == ["person", "car", "train", "toothbrush"]
    a = read_label_file(out / "labels" / "a.txt")
    assert len(a) == 1 and a[0][0] == 2
    assert a[0][1:] == pytest.approx(((10.5 + 50) / 640, (20 + 25) / 480, 100 / 640, 50 / 480), abs=1e-9)
    b = read_label_file(out / "labels" / "b.txt")
    assert [line[0] for line in b] == [0, 3]
    assert b[0][1:] == pytest.approx((165 / 300, 120 / 200, 30 / 300, 40 / 200), abs=1e-9)
    assert (out / "labels" / "empty.txt").read_text() == ""
    assert os.path.realpath(out / "images" / "a.jpg") == os.path.realpath(imagedir / "a.jpg")
    assert listed(out / "train.txt") == [str(out / "images" / f) for f in ("a.jpg", "b.jpg", "empty.jpg")]
    data = read_data(out / "coco.data")
    assert data.int("classes") == 4 and "valid" not in data and "eval" not in data

    # a validation list beside it: the training list is kept, the .data names both
    val, _ = write_coco(tmp_path, [{"id": 5, "file_name": "v.jpg", "width": 10, "height": 10}], [],
                        name="val.json")
    assert run_cli("dataset", "from-coco", val, imagedir, out, "-list", "valid", cwd=tmp_path).returncode == 0
    data = read_data(out / "coco.data")
    assert listed(out / "valid.txt") == [str(out / "images" / "v.jpg")] and len(listed(out / "train.txt")) == 3
    assert data["valid"] == str(out / "valid.txt") and data["train"] == str(out / "train.txt")


def test_from_coco_with_cocos_80_categories_evaluates_as_coco(tmp_path):
    from pydarknet.data.coco import COCO_IDS
    names = read_names(REPO / "data" / "coco.names")
    categories = [{"id": i, "name": n} for i, n in zip(COCO_IDS, names)]
    instances, imagedir = write_coco(tmp_path, [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}], [],
                                     categories)
    assert run_cli("dataset", "from-coco", instances, imagedir, tmp_path / "o", cwd=tmp_path).returncode == 0
    data = read_data(tmp_path / "o" / "coco.data")
    assert data["eval"] == "coco" and read_names(data["names"]) == names


@pytest.mark.parametrize("defect", ["malformed json", "not instances", "empty", "missing image", "unknown category"])
def test_from_coco_bad_input_is_one_line_and_writes_nothing(tmp_path, defect):
    images = [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]}]
    instances, imagedir = write_coco(tmp_path, images, annotations)
    culprit = instances
    if defect == "malformed json":
        instances.write_text('{"images": [}')
    elif defect == "not instances":
        instances.write_text('{"images": [{"id": 1}], "categories": []}')
    elif defect == "empty":
        instances.write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}')
    elif defect == "missing image":
        os.remove(imagedir / "a.jpg")
        culprit = imagedir / "a.jpg"
    else:
        instances.write_text(json.dumps({"images": images, "categories": COCO_CATEGORIES,
                                         "annotations": [dict(annotations[0], category_id=5)]}))
    out = tmp_path / "coco"
    result = run_cli("dataset", "from-coco", instances, imagedir, out, cwd=tmp_path)
    assert result.returncode == 1
    assert str(culprit) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and not out.exists()
