"""`detector demo` (pydarknet/demo.py): a video in, every frame detected, drawn and written out; bad input ends with
one error line and leaves no file behind; Ctrl-C keeps the frames detected so far."""
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from pydarknet import cli
from tests.conftest import REPO

DATA, CFG = REPO / "cfg" / "shapes.data", REPO / "cfg" / "yolov3-tiny-shapes.cfg"
WEIGHTS = REPO / "weights" / "yolov3-tiny-shapes.weights"
SAMPLE_FRAMES = {0, 1, 4, 7, 8, 11}      # the others are blank grey
BOX = re.compile(r"^\w+: \d+%\t\(left_x: +(-?\d+) +top_y: +(-?\d+) +width: +(\d+) +height: +(\d+)\)$")


def write_video(path, count, codec="MJPG", fps=10):
    """count frames: data/shapes-sample.png at SAMPLE_FRAMES (every frame when count > 12), uniform grey at the rest."""
    sample = cv2.imread(str(REPO / "data" / "shapes-sample.png"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (sample.shape[1], sample.shape[0]))
    assert writer.isOpened()
    for i in range(count):
        writer.write(sample if i in SAMPLE_FRAMES or count > 12 else np.full_like(sample, 128))
    writer.release()


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def demo_command(*args):
    return [sys.executable, "-m", "pydarknet", "detector", "demo", *map(str, args)]


def environment():
    return dict(os.environ, PYTHONPATH=str(REPO), OPENCV_LOG_LEVEL="OFF", OPENCV_VIDEOIO_DEBUG="0")


def run_demo_process(*args, cwd, weights=WEIGHTS):
    return subprocess.run(demo_command(DATA, CFG, weights, *args), cwd=cwd, env=environment(), capture_output=True,
                          text=True, timeout=300)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("pydarknet: error:")]


def frame_blocks(stdout):
    """The printed objects of each frame: (left, top, right, bottom) per `-ext_output` line."""
    blocks = []
    for block in stdout.split("Objects:")[1:]:
        boxes = []
        for line in block.splitlines():
            match = BOX.match(line)
            if match:
                left, top, w, h = map(int, match.groups())
                boxes.append((left, top, left + w, top + h))
        blocks.append(boxes)
    return blocks


def outline_changed(changed, box):
    """The share of a box's outline points where some pixel within 1 of it changed."""
    h, w = changed.shape
    left, top, right, bottom = max(box[0], 0), max(box[1], 0), min(box[2], w - 1), min(box[3], h - 1)
    near = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    points = [(top, x) for x in range(left, right + 1)] + [(bottom, x) for x in range(left, right + 1)]
    points += [(y, left) for y in range(top, bottom + 1)] + [(y, right) for y in range(top, bottom + 1)]
    return sum(near[p] for p in points) / len(points)


def test_demo_draws_every_frame_of_a_video_into_an_avi(tmp_path):
    write_video(tmp_path / "in.avi", 12)
    result = run_demo_process("in.avi", "-out_filename", "out.avi", "-ext_output", "-dont_show", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.avi", "out.avi"]          # no temp file left
    assert len(re.findall(r"^FPS:\d+\.\d \t AVG_FPS:\d+\.\d$", result.stdout, re.M)) == 12
    assert re.search(r"^Demo: 12 frames in \d+\.\d+ s, \d+\.\d frames/s$", result.stderr, re.M), result.stderr
    source, drawn = read_video(tmp_path / "in.avi"), read_video(tmp_path / "out.avi")
    assert len(drawn) == 12 and drawn[0].shape == source[0].shape
    blocks = frame_blocks(result.stdout)
    assert len(blocks) == 12
    for i, (before, after, boxes) in enumerate(zip(source, drawn, blocks)):
        changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 40
        if i in SAMPLE_FRAMES:      # a box over a shape of its own colour changes less of its outline
            shares = [outline_changed(changed, box) for box in boxes]
            assert len(boxes) >= 4 and min(shares) > .5 and sum(s > .9 for s in shares) >= 4, (i, boxes, shares)
        else:
            assert boxes == [] and changed.mean() < .001, (i, boxes, changed.mean())


def test_demo_writes_an_mp4_at_the_input_frame_rate(tmp_path):
    write_video(tmp_path / "in.avi", 12, fps=7)
    result = run_demo_process("in.avi", "-out_filename", "out.mp4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(read_video(tmp_path / "out.mp4")) == 12
    assert cv2.VideoCapture(str(tmp_path / "out.mp4")).get(cv2.CAP_PROP_FPS) == pytest.approx(7, abs=.01)
    assert sorted(os.listdir(tmp_path)) == ["in.avi", "out.mp4"]


def test_demo_without_an_output_writes_nothing_and_says_so_once(tmp_path, capsys):
    from pydarknet.detector.demo import run_demo
    write_video(tmp_path / "in.avi", 12)
    result = run_demo(DATA, CFG, WEIGHTS, str(tmp_path / "in.avi"))
    assert (result.frames, result.saved) == (12, None) and result.seconds > 0
    captured = capsys.readouterr()
    assert len(re.findall(r"^FPS:", captured.out, re.M)) == 12
    assert captured.err.count("no -out_filename") == 1
    assert os.listdir(tmp_path) == ["in.avi"]


def test_a_camera_that_is_not_there_is_one_error_line(tmp_path):
    result = run_demo_process("-c", "97", "-out_filename", "out.avi", cwd=tmp_path)
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if line.startswith("pydarknet:")]
    assert len(ours) == 1 and ours[0].startswith("pydarknet: error: camera 97"), result.stderr
    assert os.listdir(tmp_path) == []


def truncated_weights(folder):
    data = WEIGHTS.read_bytes()
    path = folder / "half.weights"
    path.write_bytes(data[:len(data) // 2])
    return path


@pytest.mark.parametrize("case", ["missing video", "not a video", "missing folder", "unknown extension",
                                  "truncated weights"])
def test_bad_input_is_one_error_line_naming_it_and_leaves_no_file(tmp_path, case):
    write_video(tmp_path / "in.avi", 12)
    weights, video, out, named = WEIGHTS, "in.avi", "out.avi", None
    if case == "missing video":
        video = named = "nothere.avi"
    elif case == "not a video":
        (tmp_path / "notes.avi").write_text("not a video\n")
        video = named = "notes.avi"
    elif case == "missing folder":
        out = named = "nofolder/out.avi"
    elif case == "unknown extension":
        out = named = "out.mkv"
    else:
        weights = truncated_weights(tmp_path)
        named = "half.weights"
    before = sorted(os.listdir(tmp_path))
    result = run_demo_process(video, "-out_filename", out, cwd=tmp_path, weights=weights)
    assert result.returncode == 1, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and named in errors[0], result.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_ctrl_c_keeps_the_frames_detected_so_far_in_a_valid_video(tmp_path):
    write_video(tmp_path / "in.avi", 300)
    process = subprocess.Popen(demo_command(DATA, CFG, WEIGHTS, "in.avi", "-out_filename", "out.avi"),
                               cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        seen = 0
        for line in process.stdout:
            seen += line.startswith("FPS:")
            if seen == 3:
                break
        assert seen == 3
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    frames = len(read_video(tmp_path / "out.avi"))
    assert 3 <= frames < 300
    assert f"Saved {frames} frames to out.avi" in err
    assert sorted(os.listdir(tmp_path)) == ["in.avi", "out.avi"]


def test_demo_help_lists_its_flags_and_other_commands_still_ignore_them(capsys):
    assert cli.main(["detector", "demo", "--help"]) == 0
    out = capsys.readouterr().out
    flags = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert "-c" in flags and "-out_filename" in flags and "-thresh" in flags
    ignored = out.split("ignored (values they take): ")[1].strip().split(", ")
    assert "-mjpeg_port 1" in ignored and "-c 1" not in ignored and "-out_filename 1" not in ignored
    assert cli.main(["detector", "test", "-c", "3", "-out_filename", "x.avi"]) == 2       # stops at its usage
    err = capsys.readouterr().err
    assert "ignoring -c 3: not supported" in err and "ignoring -out_filename x.avi: not supported" in err


def test_bench_run_writes_the_demo_row():
    from bench.run import demo_lines
    result = {"frames": 200, "repeats": 2, "forward_fps": 10.0, "demo_fps": 9.5, "ratio": .95,
              "forward_runs": [10.0, 10.0], "demo_runs": [9.4, 9.6]}
    line = demo_lines((result, None))[0]
    assert "forward alone 10.0 frames/s, whole demo 9.5 frames/s, ratio 0.95 (target >= 0.9: met" in line
    assert "NOT met" in demo_lines((dict(result, ratio=.5), None))[0]
    assert demo_lines((None, "failed: OSError: disk full")) == ["Video: failed: OSError: disk full."]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_background_threads_idle_until_the_network_waits_on_them():
    """The reader and writer run at SCHED_IDLE; once the network has waited on them they go back to the normal
    scheduler at nice BACKGROUND_NICE (on a machine with no idle core they would starve)."""
    import threading
    from pydarknet.detector.demo import BACKGROUND_NICE, Background
    background, seen, go_on = Background(), {}, threading.Event()

    def thread():
        background.join()
        tid = threading.get_native_id()
        seen["before"] = os.sched_getscheduler(tid)
        go_on.wait(10)
        seen["after"] = os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)

    worker = threading.Thread(target=thread)
    worker.start()
    while "before" not in seen:
        time.sleep(.01)
    background.starved()
    go_on.set()
    worker.join()
    assert seen["before"] == os.SCHED_IDLE
    assert seen["after"] == (os.SCHED_OTHER, BACKGROUND_NICE)
