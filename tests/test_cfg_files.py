"""Our cfg/ and data/ files say what Darknet's do.

The networks in cfg/ are our own text (own comments, layout and canonical numbers), but each must parse to the
same sections, in the same order, with the same options and values as Darknet's file of the same name. Values are
compared as numbers where both sides read as numbers or number lists (".1" is "0.1"), as strings otherwise.
"""
import math
import pathlib

import pytest

from pydarknet.cfg import read_cfg, read_data, read_names

REPO = pathlib.Path(__file__).resolve().parent.parent
CFG = REPO / "cfg"
DATA = REPO / "data"

NETWORKS = [
    "yolov1", "yolov1-tiny",
    "yolov2", "yolov2-tiny", "yolov2-voc", "yolov2-tiny-voc",
    "yolov3", "yolov3-tiny", "yolov3-voc", "yolov3-spp",
    "darknet53", "darknet19", "tiny", "alexnet", "vgg-16", "resnet18", "resnet50",
]

# What each network is, from our files alone (so these checks run without the reference too):
# input width, height, channels; number of layers after [net]; its output layers; classes.
FACTS = {
    "yolov1": (448, 448, 3, 32, ["detection"], 20),
    "yolov1-tiny": (448, 448, 3, 16, ["detection"], 20),
    "yolov2": (608, 608, 3, 32, ["region"], 80),
    "yolov2-tiny": (416, 416, 3, 16, ["region"], 80),
    "yolov2-voc": (416, 416, 3, 32, ["region"], 20),
    "yolov2-tiny-voc": (416, 416, 3, 16, ["region"], 20),
    "yolov3": (608, 608, 3, 107, ["yolo"] * 3, 80),
    "yolov3-tiny": (416, 416, 3, 24, ["yolo"] * 2, 80),
    "yolov3-voc": (416, 416, 3, 107, ["yolo"] * 3, 20),
    "yolov3-spp": (608, 608, 3, 114, ["yolo"] * 3, 80),
    "darknet53": (256, 256, 3, 78, ["softmax"], None),
    "darknet19": (256, 256, 3, 26, ["softmax"], None),
    "tiny": (224, 224, 3, 22, ["softmax"], None),
    "alexnet": (227, 227, 3, 14, ["softmax"], None),
    "vgg-16": (256, 256, 3, 25, ["softmax"], None),
    "resnet18": (256, 256, 3, 29, ["softmax"], None),
    "resnet50": (256, 256, 3, 69, ["softmax"], None),
}

# Training settings Darknet's files carry, from our files alone.
TRAINING = {
    "yolov1": dict(batch=1, subdivisions=1, learning_rate=0.0005, max_batches=40000, policy="steps",
                   steps=[200, 400, 600, 20000, 30000], scales=[2.5, 2, 2, 0.1, 0.1]),
    "yolov2": dict(batch=1, subdivisions=1, learning_rate=0.001, burn_in=1000, max_batches=500200, policy="steps",
                   steps=[400000, 450000], scales=[0.1, 0.1]),
    "yolov2-tiny-voc": dict(learning_rate=0.001, max_batches=40200, policy="steps",
                            steps=[-1, 100, 20000, 30000], scales=[0.1, 10, 0.1, 0.1]),
    "yolov3": dict(batch=64, subdivisions=16, learning_rate=0.001, burn_in=1000, max_batches=500200,
                   policy="steps", steps=[400000, 450000], scales=[0.1, 0.1], momentum=0.9, decay=0.0005),
    "yolov3-voc": dict(batch=1, subdivisions=1, max_batches=50200, steps=[40000, 45000]),
    "darknet53": dict(batch=1, subdivisions=1, learning_rate=0.1, policy="poly", power=4, max_batches=800000,
                      min_crop=128, max_crop=448, aspect=0.75),
    "darknet19": dict(batch=1, subdivisions=1, learning_rate=0.1, policy="poly", power=4, max_batches=800000,
                      burn_in=1000, min_crop=128, max_crop=448),
    "tiny": dict(batch=128, subdivisions=1, learning_rate=0.1, policy="poly", power=4, max_batches=1600000,
                 max_crop=320),
    "alexnet": dict(batch=1, subdivisions=1, learning_rate=0.01, policy="poly", power=4, max_batches=800000,
                    max_crop=256),
    "vgg-16": dict(batch=1, subdivisions=1, learning_rate=0.00001, momentum=0.9, decay=0.0005),
    "resnet50": dict(batch=1, subdivisions=1, learning_rate=0.1, policy="poly", power=4, max_batches=800000,
                     burn_in=1000, min_crop=128, max_crop=448),
}


def as_numbers(value):
    """The value as a list of floats if every comma-separated item is a number (a trailing comma allowed)."""
    items = value.split(",")
    if items and items[-1] == "" and len(items) > 1:
        items.pop()
    try:
        numbers = [float(item) for item in items]
    except ValueError:
        return None
    return numbers if all(math.isfinite(n) for n in numbers) else None


def same_value(ours, theirs):
    a, b = as_numbers(ours), as_numbers(theirs)
    if a is not None and b is not None:
        return a == b
    return ours == theirs


def describe(sections):
    return [s.name for s in sections]


# ---- helpers are themselves worth a check: a lenient comparison would make every test below pass ----

@pytest.mark.parametrize("ours, theirs", [(".1", "0.1"), ("1", "1.0"), ("10,14,23,27", "10,14,23,27,"),
                                          ("-1,-4", "-1,-4"), ("leaky", "leaky"), ("0.0005", "5e-4")])
def test_same_value_accepts_equal_values(ours, theirs):
    assert same_value(ours, theirs)


@pytest.mark.parametrize("ours, theirs", [("0.1", "0.01"), ("1,2", "1,2,3"), ("leaky", "linear"),
                                          ("leaky", "Leaky"), ("3", "abc"), ("1,2", "2,1")])
def test_same_value_rejects_different_values(ours, theirs):
    assert not same_value(ours, theirs)


# ---- the networks ----

@pytest.mark.parametrize("name", NETWORKS)
def test_network_matches_reference(name, reference):
    ours = read_cfg(CFG / f"{name}.cfg")
    theirs = read_cfg(reference / "cfg" / f"{name}.cfg")
    assert len(ours) == len(theirs), f"{name}: {len(ours)} sections, Darknet's has {len(theirs)}"
    assert describe(ours) == describe(theirs)
    for index, (a, b) in enumerate(zip(ours, theirs)):
        where = f"{name}.cfg section {index} [{a.name}] (our line {a.line}, Darknet's line {b.line})"
        assert set(a.options) == set(b.options), (
            f"{where}: keys differ: ours only {sorted(set(a.options) - set(b.options))}, "
            f"Darknet's only {sorted(set(b.options) - set(a.options))}")
        for key in b.options:
            assert same_value(a.options[key], b.options[key]), (
                f"{where}: {key}={a.options[key]} but Darknet's says {key}={b.options[key]}")


@pytest.mark.parametrize("name", NETWORKS)
def test_network_input_and_training_settings_match_reference(name, reference):
    net = read_cfg(CFG / f"{name}.cfg")[0]
    ref = read_cfg(reference / "cfg" / f"{name}.cfg")[0]
    for key in ("width", "height", "channels", "batch", "subdivisions", "max_batches"):
        assert net.int(key, 0) == ref.int(key, 0), f"{name}: {key}"     # vgg-16 gives no max_batches
    for key in ("learning_rate", "momentum", "decay"):
        assert net.float(key) == ref.float(key), f"{name}: {key}"
    assert net.str("policy") == ref.str("policy")
    assert net.ints("steps") == ref.ints("steps")
    assert net.floats("scales") == ref.floats("scales")


@pytest.mark.parametrize("name", NETWORKS)
def test_network_facts(name):
    width, height, channels, layers, outputs, classes = FACTS[name]
    sections = read_cfg(CFG / f"{name}.cfg")
    net = sections[0]
    assert net.name == "net"
    assert (net.int("width"), net.int("height"), net.int("channels")) == (width, height, channels)
    assert len(sections) - 1 == layers
    kinds = [s.name for s in sections[1:]]
    assert [k for k in kinds if k in ("yolo", "region", "detection", "softmax")] == outputs
    assert kinds[-1] == outputs[-1]
    if classes is not None:
        assert {s.int("classes") for s in sections if s.name in ("yolo", "region", "detection")} == {classes}


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_network_training_settings(name):
    net = read_cfg(CFG / f"{name}.cfg")[0]
    for key, expected in TRAINING[name].items():
        if isinstance(expected, list):
            got = net.floats(key)
        elif isinstance(expected, str):
            got = net.str(key)
        else:
            got = net.float(key)
        assert got == expected, f"{name}: {key}"


def test_yolov3_heads_and_routes():
    """The part people get wrong when they rewrite yolov3.cfg: masks, anchors, and where the routes point."""
    sections = read_cfg(CFG / "yolov3.cfg")[1:]
    yolo = [i for i, s in enumerate(sections) if s.name == "yolo"]
    assert yolo == [82, 94, 106]
    assert [sections[i].ints("mask") for i in yolo] == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    anchors = [10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326]
    assert all(sections[i].ints("anchors") == anchors for i in yolo)
    assert all(sections[i - 1].int("filters") == 255 and sections[i - 1].str("activation") == "linear"
               for i in yolo)
    routes = [(i, s.ints("layers")) for i, s in enumerate(sections) if s.name == "route"]
    assert routes == [(83, [-4]), (86, [-1, 61]), (95, [-4]), (98, [-1, 36])]
    assert sum(s.name == "shortcut" for s in sections) == 23
    assert all(s.int("from") == -3 for s in sections if s.name == "shortcut")


@pytest.mark.parametrize("name", NETWORKS)
def test_our_files_are_normalised(name):
    """key=value without blanks, no tabs, numbers written canonically (no bare '.5', no trailing comma)."""
    for number, line in enumerate((CFG / f"{name}.cfg").read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        assert line == line.strip() and " " not in line and "\t" not in line, f"{name}.cfg:{number}: {line!r}"
        if line.startswith("["):
            continue
        key, value = line.split("=", 1)
        assert not value.endswith(","), f"{name}.cfg:{number}"
        assert not any(item.startswith((".", "-.")) for item in value.split(",")), f"{name}.cfg:{number}"


@pytest.mark.parametrize("name", NETWORKS)
def test_our_files_say_what_they_are(name):
    text = (CFG / f"{name}.cfg").read_text()
    header = text[:text.index("[net]")]
    assert f"Darknet's {name}.cfg" in header
    width, height, channels = FACTS[name][:3]
    assert f"{width}x{height}x{channels}" in header


# ---- .data and .names ----

DATASETS = [("coco", 80), ("voc", 20)]


@pytest.mark.parametrize("name, classes", DATASETS)
def test_data_file_matches_reference(name, classes, reference):
    ours = read_data(CFG / f"{name}.data")
    theirs = read_data(reference / "cfg" / f"{name}.data")
    assert set(ours) == set(theirs)
    assert ours.int("classes") == theirs.int("classes") == classes
    names = REPO / ours["names"]
    assert not ours["names"].startswith("/"), "names is relative to the repository root"
    assert names.is_file(), names
    assert read_names(names) == read_names(reference / "data" / f"{name}.names")
    assert ours["names"] == f"data/{name}.names"
    if "eval" in theirs:
        assert ours["eval"] == theirs["eval"]


@pytest.mark.parametrize("name, classes", DATASETS)
def test_data_file_facts(name, classes):
    data = read_data(CFG / f"{name}.data")
    assert data.int("classes") == classes
    assert len(read_names(REPO / data["names"])) == classes
    for key in ("train", "valid", "backup"):
        assert data.get(key), f"{name}.data: {key} is empty"


@pytest.mark.parametrize("name, count, first, last", [("coco", 80, "person", "toothbrush"),
                                                      ("voc", 20, "aeroplane", "tvmonitor")])
def test_names(name, count, first, last):
    names = read_names(DATA / f"{name}.names")
    assert len(names) == count
    assert len(set(names)) == count
    assert (names[0], names[-1]) == (first, last)
    assert all(n == n.strip() and n for n in names)


@pytest.mark.parametrize("name", ["coco", "voc"])
def test_names_match_reference(name, reference):
    assert read_names(DATA / f"{name}.names") == read_names(reference / "data" / f"{name}.names")


@pytest.mark.parametrize("name, classes", DATASETS)
def test_class_count_agrees_with_networks(name, classes):
    """Every network of the data set predicts as many classes as its .names lists."""
    names = read_names(DATA / f"{name}.names")
    nets = [n for n in NETWORKS if FACTS[n][5] == classes]
    assert nets
    for net in nets:
        for s in read_cfg(CFG / f"{net}.cfg"):
            if s.name in ("yolo", "region", "detection"):
                assert s.int("classes") == len(names), net


# ---- our text is ours ----

def test_no_file_is_a_byte_copy_of_the_reference(reference):
    ours = [p for folder in (CFG, DATA) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".names"]
    assert len(ours) >= len(NETWORKS) + 2
    by_size = {}
    for path in reference.rglob("*"):
        if path.is_file():
            by_size.setdefault(path.stat().st_size, []).append(path)
    copies = []
    for path in ours:
        candidates = by_size.get(path.stat().st_size, [])
        if candidates:
            data = path.read_bytes()
            copies += [f"{path.relative_to(REPO)} == {c}" for c in candidates if c.read_bytes() == data]
    assert not copies, copies


def test_every_file_we_ship_is_listed():
    """cfg/ and data/ hold every file this module checks."""
    expected = {f"{n}.cfg" for n in NETWORKS} | {"coco.data", "voc.data"}
    assert expected <= {p.name for p in CFG.iterdir()}
    assert {"coco.names", "voc.names"} <= {p.name for p in DATA.iterdir()}
