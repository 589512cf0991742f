"""The command line end to end on a small random-weights network: output lines, images, exit codes."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pydarknet.cfg import read_cfg
from pydarknet.cli import main
from pydarknet.network import Network
from pydarknet.weights import sane_random_weights, save_weights
from tests.conftest import REPO, run_cli

TINY_CFG = """
[net]
batch=1
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=24
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=3
num=3
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with a tiny yolo cfg, its random weights, a .data and .names file and an image."""
    (tmp_path / "tiny.cfg").write_text(TINY_CFG)
    net = Network(read_cfg(tmp_path / "tiny.cfg"), "tiny.cfg")
    sane_random_weights(net, seed=3)
    # bias the objectness up so that boxes pass the threshold and get drawn
    net.layers[2].biases[4::8] = 4.0
    save_weights(net, tmp_path / "tiny.weights")
    (tmp_path / "three.names").write_text("circle\nsquare\ntriangle\n")
    (tmp_path / "three.data").write_text("classes=3\nnames=three.names\n")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "img.png"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_detector_test_prints_and_draws(workdir, capsys):
    before = cv2.imread("img.png")
    assert main(["detector", "test", "three.data", "tiny.cfg", "tiny.weights", "img.png", "-thresh", "0.2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("img.png: Predicted in ") and out[0].endswith(" seconds.")
    assert len(out) > 1 and all(line.split(": ")[0] in ("circle", "square", "triangle") for line in out[1:])
    assert all(line.endswith("%") for line in out[1:])
    drawn = cv2.imread("predictions.jpg")
    assert drawn is not None and drawn.shape == before.shape
    assert np.abs(drawn.astype(int) - before.astype(int)).mean() > 2     # boxes and labels changed pixels


def test_out_name_and_ext_output(workdir, capsys):
    assert main(["detector", "test", "three.data", "tiny.cfg", "tiny.weights", "img.png", "-out", "result",
                 "-ext_output", "-dont_show", "-thresh", ".2"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines and all("(left_x:" in line and "height:" in line for line in lines)
    assert cv2.imread("result.jpg") is not None and not os.path.exists("predictions.jpg")


def test_json_output_reads_images_from_stdin(workdir, capsys, monkeypatch):
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO("img.png\nimg.png\n"))
    assert main(["detector", "test", "three.data", "tiny.cfg", "tiny.weights", "-out", "result.json",
                 "-thresh", ".2", "-dont_show"]) == 0
    records = json.loads(open("result.json").read())
    assert [r["frame_id"] for r in records] == [1, 2] and records[0]["filename"] == "img.png"
    objects = records[0]["objects"]
    assert objects and {"class_id", "name", "relative_coordinates", "confidence"} <= set(objects[0])
    assert all(o["confidence"] > .2 for o in objects)
    assert "Enter Image Path" not in capsys.readouterr().out


def test_a_truncated_weights_warning_comes_last_too(workdir):
    """The warning of a truncated weights file is printed before the detections and again after them, where a long
    listing (thousands of lines with random weights) cannot bury it."""
    (workdir / "trunc.weights").write_bytes((workdir / "tiny.weights").read_bytes()[:300])
    done = run_cli("detector", "test", "three.data", "tiny.cfg", "trunc.weights", "img.png", "-thresh", ".2",
                   cwd=workdir)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "trunc.weights: truncated inside layer" in line]
    assert len(warned) == 2 and done.stderr.strip().splitlines()[-1] == warned[1]


def test_prompt_loop(workdir, capsys, monkeypatch):
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO("img.png\n"))
    assert main(["detector", "test", "three.data", "tiny.cfg", "tiny.weights"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("Enter Image Path: ") == 2 and "img.png: Predicted in" in captured.out
    assert "Saved predictions.jpg" in captured.err      # as with an image on the line


def test_partial_writes_first_layers(workdir):
    assert main(["partial", "tiny.cfg", "tiny.weights", "first.weights", "1"]) == 0
    net = Network(read_cfg("tiny.cfg"), "tiny.cfg")
    head = np.fromfile("first.weights", "<i4", 3)
    assert list(head) == [0, 2, 0]
    assert os.path.getsize("first.weights") == 20 + 4 * net.layers[0].file_floats
    full = np.fromfile("tiny.weights", "<f4", offset=20)[:net.layers[0].file_floats]
    np.testing.assert_array_equal(np.fromfile("first.weights", "<f4", offset=20), full)


def _overflowing_weights(workdir):
    """The tiny network with output biases that make every box of anchor 0 infinitely wide and of anchor 1 infinitely
    high (exp(1000)), with all objectness high: 512 of its 16 * 16 * 3 = 768 records are not finite."""
    net = Network(read_cfg(workdir / "tiny.cfg"), "tiny.cfg")
    sane_random_weights(net, seed=3)
    head = net.layers[2].biases          # per anchor: x, y, w, h, objectness, 3 classes
    head[4::8] = 20.0
    head[0 * 8 + 2] = 1000.0
    head[1 * 8 + 3] = 1000.0
    save_weights(net, workdir / "overflow.weights")
    return net


@pytest.mark.parametrize("case", ["overflowing", "truncated", "partial"])
def test_non_finite_outputs_drop_boxes_with_one_warning(workdir, case):
    """Weights that make the network output inf/NaN never crash decoding, NMS or drawing: the records are dropped
    with one warning line that says how many and why, and the command draws the rest and exits 0."""
    if case == "overflowing":
        _overflowing_weights(workdir)
        result = run_cli("detector", "test", "three.data", "tiny.cfg", "overflow.weights", "img.png", "-thresh", ".2",
                         cwd=workdir)
    else:   # what users try on a real network: a cut download, the first layers only (the rest initialised)
        cfg, weights = REPO / "cfg" / "yolov3-tiny-shapes.cfg", REPO / "weights" / "yolov3-tiny-shapes.weights"
        if case == "truncated":
            (workdir / "cut.weights").write_bytes(weights.read_bytes()[:100_000])
        else:
            assert run_cli("partial", str(cfg), str(weights), "cut.weights", "8", cwd=workdir).returncode == 0
        result = run_cli("detector", "test", str(REPO / "cfg" / "shapes.data"), str(cfg), "cut.weights",
                         str(REPO / "data" / "shapes-sample.png"), cwd=workdir)
        assert f"cut.weights: {'truncated inside' if case == 'truncated' else 'partial weights file'}" in result.stderr
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    dropped = [line for line in result.stderr.splitlines() if "detections whose box or score is not" in line]
    assert len(dropped) <= 1, result.stderr
    if case == "overflowing":
        assert dropped == ["Warning: tiny.cfg: dropped 512 of 768 detections whose box or score is not a finite "
                           "number (the network output inf/NaN: incomplete weights, or a network not trained yet?)"]
        assert "overflow encountered" not in result.stderr and "invalid value" not in result.stderr
        names = [line.split(": ")[0] for line in result.stdout.splitlines()[1:]]
        assert names and set(names) <= {"circle", "square", "triangle"}
    assert cv2.imread(str(workdir / "predictions.jpg")) is not None


@pytest.mark.parametrize("args,message", [
    (["detector", "test", "three.data", "tiny.cfg", "missing.weights", "img.png"],
     "missing.weights: weights file not found"),
    (["detector", "test", "three.data", "tiny.cfg", "tiny.weights", "nope.png"], "nope.png"),
    (["detector", "test", "three.data", "missing.cfg", "tiny.weights", "img.png"], "missing.cfg: cfg file not found"),
    (["detector", "test", "three.data", "badline.cfg", "tiny.weights", "img.png"], "badline.cfg:10:"),
    (["detector", "test", "three.data", "sam.cfg", "tiny.weights", "img.png"], "unknown type [sam]"),
    (["frobnicate"], "unknown command"),
])
def test_bad_input_exits_with_one_line(workdir, args, message):
    (workdir / "badline.cfg").write_text(TINY_CFG.replace("filters=8", "filters=eight"))
    (workdir / "sam.cfg").write_text(TINY_CFG + "\n[sam]\nfrom=-1\n")
    result = run_cli(*args, cwd=workdir)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()     # Darknet's layer table may come first, as Darknet prints it
    errors = [line for line in lines if line.startswith("pydarknet:")]
    assert errors == [lines[-1]] and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_detect_verb_uses_coco_names(workdir):
    """`pydarknet detect` reads cfg/coco.data as Darknet's does; a 3-class network has fewer classes than names."""
    result = run_cli("detect", "tiny.cfg", "tiny.weights", "img.png", "-thresh", ".2", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("img.png: Predicted in")
    names = {line.split(":")[0] for line in result.stdout.splitlines()[1:]}
    assert names and names <= {"person", "bicycle", "car"}


def test_module_and_console_script_share_main():
    result = subprocess.run([sys.executable, "-m", "pydarknet", "-h"], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0 and "detector test" in result.stdout


def test_layer_table_and_unused_fields_on_stderr(workdir):
    (workdir / "extra.cfg").write_text(TINY_CFG.replace("filters=8\n", "filters=8\nflavour=vanilla\n"))
    result = run_cli("detector", "test", "three.data", "extra.cfg", "tiny.weights", "img.png", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "layer     filters    size              input                output" in result.stderr
    # 2 * 8 filters * 3*3*3 * 32*32 outputs = 0.000442 BFLOP
    assert "    0 conv      8  3 x 3 / 2    64 x  64 x   3   ->    32 x  32 x   8  0.000 BFLOPs" in result.stderr
    assert "extra.cfg:11: Unused field: 'flavour = vanilla' in [convolutional]" in result.stderr


def test_threads_flag_sets_numba_and_blas(workdir, monkeypatch):
    """-threads N: N threads for the kernels and the GEMM pieces; BLAS itself on one (backend/cpu/threads.py)."""
    import numba
    from threadpoolctl import threadpool_info
    monkeypatch.setattr(numba, "set_num_threads", numba.set_num_threads)
    before = numba.get_num_threads()
    try:
        assert main(["-threads", "1", "detector", "test", "three.data", "tiny.cfg", "tiny.weights", "img.png"]) == 0
        assert numba.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    finally:
        from pydarknet.cli import set_threads
        set_threads(before)


def test_detect_loads_only_what_it_uses_and_exits_with_its_code(tmp_path):
    """The command's process turns down Numba's scipy.linalg and cffi probes, and with its kernels in Numba's
    cache (the first run puts them there) loads neither Numba's registries (numba.np.arraymath) nor the training
    code; it still detects, and its exit code survives the quick exit."""
    unwanted = ["scipy.linalg", "cffi", "numba.np.arraymath", "pydarknet.trainer", "pydarknet.detector.train"]
    script = ("import sys\nfrom pydarknet import cli\ncli.prepare_process()\n"
              "code = cli.main(['detect', 'cfg/yolov3-tiny-shapes.cfg', 'weights/yolov3-tiny-shapes.weights', "
              "'data/shapes-sample.png', '-thresh', '.5'])\n"
              f"print('LOADED', [m for m in {unwanted!r} if m in sys.modules], code)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
    assert "LOADED [] 0" in done.stdout, done.stdout + done.stderr
    assert "Predicted in" in done.stdout
    done = run_cli("detect", REPO / "cfg" / "yolov3-tiny-shapes.cfg", tmp_path / "missing.weights",
                   REPO / "data" / "shapes-sample.png", cwd=tmp_path)
    assert done.returncode == 1 and "missing.weights" in done.stderr


@pytest.mark.parametrize("words, flags", [
    (["detector", "test"], {"-thresh": "0.5", "-hier": "0.5", "-save_labels": "off (a switch)", "-out": "none"}),
    (["detector", "train"], {"-workers": "4", "-map": "off (a switch)", "-chart": "chart.png"}),
    (["detector", "map"], {"-thresh": "0.25", "-iou_thresh": "0.5"}),
    (["dataset", "from-coco"], {"-list": "train"}),
    (["detector", "calc_anchors"], {"-num_of_clusters": "5", "-seed": "0", "-width": "none",
                                    "-show": "off (a switch)"}),
    (["detect"], {"-thresh": "0.5", "-ext_output": "off (a switch)"}),
    (["export"], {"-batch": "1", "-decode": "off (a switch)"}),
    (["classifier", "train"], {"-clear": "off (a switch)", "-seed": "none", "-workers": "4"}),
    (["classifier", "predict"], {"-t": "0"}),
])
def test_help_lists_each_commands_flags_with_their_defaults(tmp_path, words, flags):
    """`CMD --help` lists the flags the command's own code reads, so the list cannot drift from what it parses."""
    result = run_cli(*words, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: pydarknet {' '.join(words)}")
    listed = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.startswith("  -"))
    for flag, default in flags.items():
        assert listed.get(flag) == default, (flag, result.stdout)
    assert "-threads" in listed and "-mjpeg_port 1" in result.stdout


def test_alexeyabs_unsupported_flags_are_reported_and_their_values_not_read_as_files(tmp_path):
    result = run_cli("detector", "test", REPO / "cfg" / "shapes.data", REPO / "cfg" / "yolov3-tiny-shapes.cfg",
                     REPO / "weights" / "yolov3-tiny-shapes.weights", "-mjpeg_port", "8090", "-letter_box",
                     REPO / "data" / "shapes-sample.png", "-dont_show", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ignoring -mjpeg_port 8090: not supported" in result.stderr
    assert "ignoring -letter_box: not supported" in result.stderr
    assert (tmp_path / "predictions.jpg").exists() and "circle" in result.stdout + result.stderr


def test_numpys_arithmetic_warnings_are_said_in_words():
    """A raw 'RuntimeWarning: overflow encountered in cast' reached users of a diverging run: the command line says
    what it means; other warnings keep their own words."""
    from pydarknet.cli import warning_line
    line = warning_line(RuntimeWarning("overflow encountered in cast"), RuntimeWarning)
    assert line.startswith("Warning: numbers too large for float32") and "(numpy: overflow encountered in cast)" in line
    assert "diverging" in line and "\n" not in line
    assert warning_line(UserWarning("x.weights: partial weights file"), UserWarning) == \
        "Warning: x.weights: partial weights file"


@pytest.mark.parametrize("words", [["-thresh", "50"], ["-hier", "1.5"], ["-thresh", "nan"]])
def test_a_threshold_outside_0_to_1_is_a_usage_error(workdir, capsys, words):
    """-thresh 50 (a percentage) would keep nothing, silently: thresholds are from 0 to 1, said in one line."""
    assert main(["detector", "test", "three.data", "tiny.cfg", "tiny.weights", "img.png", *words]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"pydarknet: {words[0]} {words[1]}: thresholds are from 0 to 1 (-thresh .5 for 50%)\n"
    assert captured.out == "" and not os.path.exists("predictions.jpg")


def test_train_help_says_when_map_measures(capsys):
    assert main(["detector", "train", "--help"]) == 0
    usage = capsys.readouterr().out.splitlines()[0]
    assert usage.startswith("usage: pydarknet detector train DATA CFG") and "at least 100 iterations apart" in usage
