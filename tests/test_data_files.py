""".data files as a new user writes them (issue 25): paths with spaces, keys left out, and a cfg whose heads detect
another number of classes than the .data file's `classes=`. The commands run as a user runs them."""
import shutil

import pytest

from conftest import run_cli
from pydarknet.cfg import read_cfg, read_data, read_names
from pydarknet.classifier import DataOptions
from pydarknet.data import coco, shapes, shapes_cls, voc
from pydarknet.data.labels import read_list
from pydarknet.errors import CfgError
from pydarknet.network import Network
from pydarknet.weights import sane_random_weights, save_weights
from tests.test_dataset_convert import VOC, write_coco, write_voc
from tests.test_train_cli import iterations, write_cfg

LAYER_TABLE = "layer     filters    size"


def data_file(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


def lists_of(data):
    """Every list and names file a .data file names, read back through path_of as the commands read them."""
    options = read_data(data)
    read = {key: read_list(options.path_of(key, None)) for key in ("train", "valid", "test") if key in options}
    read.update({key: read_names(options.path_of(key, None)) for key in ("names", "labels") if key in options})
    return read


# ---- 2. paths with spaces ----

def test_a_value_keeps_the_spaces_inside_it_and_loses_those_at_its_ends(tmp_path):
    data = data_file(tmp_path, "a.data", "classes = 5 \ntrain =  /my data/sp ace/train.txt \r\n names\t= x y.names\n")
    assert dict(read_data(data)) == {"classes": "5", "train": "/my data/sp ace/train.txt", "names": "x y.names"}


def test_a_value_darknet_would_despace_never_silently_names_another_file(tmp_path):
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "train.txt").write_text(f"{tmp_path / 'space' / 'a.png'}\n")
    data = data_file(tmp_path, "a.data", f"classes=1\ntrain={tmp_path / 's pace' / 'train.txt'}\n")
    with pytest.raises(CfgError) as error:
        read_data(data).path_of("train", "data/train.list")
    assert str(error.value) == (f"{data}:2: train={tmp_path / 's pace' / 'train.txt'}: no such file; Darknet, which "
                                f"strips every space from a .data line, would read {tmp_path / 'space' / 'train.txt'}"
                                f" (pydarknet keeps the spaces inside a value)")
    (tmp_path / "s pace").mkdir()
    (tmp_path / "s pace" / "train.txt").write_text("b.png\n")
    assert read_list(read_data(data).path_of("train", "data/train.list")) == ["b.png"]


def test_every_writer_writes_a_data_file_read_back_from_a_folder_with_spaces(tmp_path):
    root = tmp_path / "my data"
    dataset = shapes.generate(root / "sp ace", n=6, size=32, seed=0, workers=1)
    read = lists_of(dataset.data)
    assert read["train"] == dataset.train and read["valid"] == dataset.valid and len(read["names"]) == 5
    read = lists_of(shapes_cls.generate(root / "c ls", n=6, size=16, seed=0, workers=1))
    assert len(read["train"]) + len(read["valid"]) == 6 and read["test"] == read["valid"] and len(read["labels"]) == 5
    assert all(" ls/images/" in path for path in read["train"])
    devkit = root / "VOC devkit"
    write_voc(devkit, VOC)
    read = lists_of(voc.from_voc(devkit, root / "v oc", out=None)["data"])
    assert read["train"] and read["valid"] and all(path.startswith(str(devkit / "VOC"))
                                                   for path in read["train"] + read["valid"])
    instances, imagedir = write_coco(root, [{"id": 1, "file_name": "a b.jpg", "width": 8, "height": 8}], [])
    read = lists_of(coco.from_coco(instances, imagedir, root / "co co", out=None)["data"])
    assert read["train"] == [str(root / "co co" / "images" / "a b.jpg")] and len(read["names"]) == 4


def test_the_classifier_reads_its_own_folder_not_the_one_without_the_space(tmp_path, monkeypatch):
    """The issue's `classifier label "c ls/..."` labelled the images of cls/ (60 of them) instead of its own 2."""
    monkeypatch.chdir(tmp_path)
    shapes_cls.generate("c ls", n=4, size=16, seed=0, workers=1)
    shapes_cls.generate("cls", n=12, size=16, seed=0, workers=1)
    _, paths = DataOptions("c ls/shapes-cls.data").image_list("test")
    assert len(paths) == 1 and paths[0].startswith(str(tmp_path / "c ls"))


def test_a_dataset_in_a_folder_with_a_space_trains_and_validates(tmp_path):
    result = run_cli("dataset", "shapes", "sp ace", "-n", "16", "-size", "64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data, cfg = "sp ace/shapes.data", write_cfg(tmp_path)
    result = run_cli("detector", "train", data, cfg, "-max_batches", "2", "-seed", "1", "-workers", "1", "-chart",
                     "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [i for i, _, _ in iterations(result.stdout)] == [1, 2] and "dataset check -fast: no problems" in \
        result.stdout
    weights = tmp_path / "sp ace" / "backup" / "tiny_final.weights"
    assert weights.exists()
    result = run_cli("detector", "valid", data, cfg, weights, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(
        f"comp4_det_test_{name}.txt" for name in shapes.SHAPES)
    result = run_cli("detector", "map", data, cfg, weights, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mean average precision (mAP@0.50)" in result.stdout


# ---- 5. keys left out ----

def tiny_dataset(folder):
    """A tiny shapes dataset, its .data lines as a dict, the tiny cfg and random weights for it."""
    dataset = shapes.generate(folder / "shapes", n=4, size=64, seed=0, workers=1)
    lines = dict(line.split("=", 1) for line in open(dataset.data).read().splitlines())
    cfg = write_cfg(folder)
    net = Network(read_cfg(cfg), str(cfg))
    sane_random_weights(net, seed=1)
    save_weights(net, folder / "tiny.weights")
    return dataset, lines, cfg


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("command, key, default", [
    ("detector train", "train", "data/train.list"),
    ("detector train -map", "names", "data/names.list"),
    ("detector test", "names", "data/names.list"),
    ("detector valid", "valid", "data/train.list"),
    ("detector valid", "names", "data/names.list"),
    ("detector map", "valid", "data/train.txt"),
    ("detector map", "names", "data/names.list"),
    ("detector calc_anchors", "train", "data/train.list"),
])
def test_a_missing_key_names_the_data_file_and_the_key_before_the_network_is_built(tiny, tmp_path, command, key,
                                                                                  default):
    dataset, lines, cfg = tiny
    data = data_file(tmp_path, "my.data", "".join(f"{k}={v}\n" for k, v in lines.items() if k != key))
    args = [data, cfg, cfg.parent / "tiny.weights"] + ([dataset.valid[0]] if command == "detector test" else [])
    if command == "detector calc_anchors":
        args = [data, "-width", "64", "-height", "64"]
    result = run_cli(*command.split(), *args, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == \
        f"pydarknet: error: {data}: no '{key}=' line (Darknet's default {default} does not exist)"
    assert LAYER_TABLE not in result.stderr


def test_an_empty_value_and_the_classifiers_keys_are_named_too(tiny, tmp_path):
    _, lines, cfg = tiny
    data = data_file(tmp_path, "my.data", "".join(f"{k}={v if k != 'train' else ''}\n" for k, v in lines.items()))
    result = run_cli("detector", "train", data, cfg, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.splitlines()[-1] == \
        f"pydarknet: error: {data}:2: 'train=' names no file" and LAYER_TABLE not in result.stderr
    data = data_file(tmp_path, "cls.data", "classes=2\ntrain=train.list\n")
    result = run_cli("classifier", "train", data, cfg, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.splitlines()[-1] == \
        f"pydarknet: error: {data}: no 'labels=' line (Darknet's default data/labels.list does not exist)"


def test_darknets_default_is_still_read_where_it_exists(tiny, tmp_path):
    dataset, lines, _ = tiny
    (tmp_path / "data").mkdir()
    shutil.copy(lines["names"], tmp_path / "data" / "names.list")
    data = data_file(tmp_path, "my.data", "".join(f"{k}={v}\n" for k, v in lines.items() if k != "names"))
    assert read_names(read_data(data).file_of("names", "data/names.list")) == list(shapes.SHAPES)


# ---- 6. the cfg's classes against the .data file's ----

def test_a_class_count_mismatch_is_a_problem_for_check_stops_training_and_is_a_warning_for_detection(tiny, tmp_path):
    dataset, lines, cfg = tiny
    coco_cfg = tmp_path / "eighty.cfg"
    coco_cfg.write_text(cfg.read_text().replace("classes=5", "classes=80"))
    line = next(n for n, text in enumerate(coco_cfg.read_text().splitlines(), 1) if text == "classes=80")
    result = run_cli("dataset", "check", dataset.data, coco_cfg, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    problem = f"{coco_cfg}:{line}: [yolo] classes=80, but {dataset.data}:1 has classes=5"
    assert result.stdout.splitlines() == [problem, "1 problem (classes differ from the .data file's: 1)"]
    assert run_cli("dataset", "check", dataset.data, cfg, cwd=tmp_path).stdout.splitlines()[-1] == "no problems"

    result = run_cli("detector", "train", dataset.data, coco_cfg, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"pydarknet: error: {problem}; training needs the two to agree (and the "
                                          f"filters= before each head to follow from them)"]

    four = data_file(tmp_path, "four.data", f"classes=4\nnames={lines['names']}\n")
    image = dataset.valid[0]
    result = run_cli("detector", "test", four, cfg, cfg.parent / "tiny.weights", image, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(n for n, text in enumerate(cfg.read_text().splitlines(), 1) if text == "classes=5")
    assert f"Warning: {cfg}:{line}: [yolo] classes=5, but {four}:1 has classes=4 (detection goes by the cfg)" in \
        result.stderr.splitlines()
    assert "Saved predictions" in result.stderr or (tmp_path / "predictions.png").exists() or \
        (tmp_path / "predictions.jpg").exists()


def test_a_head_without_classes_counts_darknets_default(tmp_path):
    from pydarknet.data.check import classes_mismatch
    cfg = tmp_path / "v1.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\n\n[detection]\nside=7\n")
    data = data_file(tmp_path, "a.data", "classes=3\n")
    assert classes_mismatch(read_data(data), cfg) == (f"{cfg}:5", f"[detection] classes=1 (the default), but "
                                                                  f"{data}:1 has classes=3")
    assert classes_mismatch(read_data(data_file(tmp_path, "b.data", "names=x\n")), cfg) is None

