"""bench/RESULTS.md bookkeeping: a benchmark rewrites only its own section, and `make bench-learn CFGS=...` only
the rows of the cfgs it trained."""
import sys

from conftest import REPO

sys.path.insert(0, str(REPO))
from bench import bench_learn, results  # noqa: E402


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# pydarknet benchmarks\n\n## A\n\nold a\n\n## B\n\n```\n## not a heading\n```\n")
    results.write_section("## A\n\nnew a\n", path)
    results.write_section("## C\n\nc\n", path)
    assert path.read_text() == ("# pydarknet benchmarks\n\n## A\n\nnew a\n\n## B\n\n```\n## not a heading\n```\n"
                                "\n## C\n\nc\n")


def test_bench_learn_replaces_the_rows_it_ran_and_keeps_the_rest():
    old = "\n".join(["## Learning", "", "intro", ""] + bench_learn.HEADER + [
        "| yolov3-tiny-shapes (demo) | 2026-01-01 00:00 | 2000 its | 0.944 | >= 0.80 within 20 min | met |",
        "| yolov1-tiny-shapes | 2026-01-01 00:00 | 6.7 min | 0.021 | >= 0.50 | not met |",
        "", "notes on the demo run", "", "| another | table |", "|---|---|", "| yolov1-tiny-shapes | kept |"])
    new = bench_learn.section([{"name": "yolov1-tiny-shapes", "train_s": 600, "map": .61, "total_s": 700},
                               {"name": "yolov2-tiny-shapes", "train_s": 540, "map": .42, "total_s": 600}], old)
    rows = [line for line in new.splitlines() if line.startswith("| yolo")][:-1]   # the last: the notes' table
    assert rows[0] == ("| yolov3-tiny-shapes (demo) | 2026-01-01 00:00 | 2000 its | 0.944 | >= 0.80 within 20 min "
                       "| met |")
    assert rows[1].startswith("| yolov2-tiny-shapes |") and rows[1].endswith("| 9.0 min | 0.420 | >= 0.50 | not met |")
    assert rows[2].startswith("| yolov1-tiny-shapes |") and rows[2].endswith("| 10.0 min | 0.610 | >= 0.50 | met |")
    assert len(rows) == 3 and new.count("| cfg |") == 1
    assert new.rstrip().endswith("notes on the demo run\n\n| another | table |\n|---|---|\n"
                                 "| yolov1-tiny-shapes | kept |")


def test_forward_table_targets_and_opencv_errors():
    from bench import run
    row = {"work": "w", "bflops": 5.6, "repeats": 3, "ours": 60.0, "cv": 100.0, "ratio": 0.6, "cv_error": None}
    busy = dict(row, work="w busy", busy=True, ours=110.0, ratio=1.1)
    bad = dict(row, work="v1", cv=None, ratio=None, cv_error="Unknown layer type: detection")
    lines = run.forward_lines([row, dict(row, ratio=0.95), bad], ([busy], None))
    assert lines[2].endswith("| 0.60 | met, goal met |")
    assert lines[3].endswith("| 0.95 | not met |")               # quiet target 0.9x
    assert "`Unknown layer type: detection`" in lines[4]
    assert lines[5].endswith("| 1.10 | met |")                     # busy target 1.2x
    assert run.forward_lines([row], (None, "failed: X"))[-2] == "One core busy: failed: X."


def test_profile_table_shares_and_conv_kinds():
    from types import SimpleNamespace
    from bench import bench_profile
    rows = [{"work": "w", "pass": "inference forward", "kind": "convolutional 1x1", "layers": 2, "ms": 30.0},
            {"work": "w", "pass": "whole pass", "kind": "all", "layers": 5, "ms": 40.0, "layers_ms": 30.0}]
    table = bench_profile.table(rows)
    assert table[2] == "| w | inference forward | convolutional 1x1 | 2 | 30.0 | 75% |"
    assert "outside them 10.0 ms" in table[3]
    conv = SimpleNamespace(type="convolutional", size=3, stride=1, derived={"winograd": 0})
    assert bench_profile.kind(conv) == "convolutional 3x3 Winograd"
    small = dict(type="convolutional", size=3, stride=1, derived={}, pad=1, groups=1)
    assert bench_profile.kind(SimpleNamespace(in_shape=(16, 80, 80), **small)) == "convolutional 3x3 direct"
    assert bench_profile.kind(SimpleNamespace(in_shape=(48, 80, 80), **small)) == "convolutional 3x3 im2col"
    assert bench_profile.kind(SimpleNamespace(type="convolutional", size=3, stride=2)) == "convolutional 3x3 strided"
    assert bench_profile.kind(SimpleNamespace(type="none")) == "simplenamespace"


def test_dataset_tools_line_says_whether_the_target_is_met():
    from bench.run import tools_lines
    line = tools_lines(({"files": 100_000, "seconds": 7.06, "problems": 5}, None))[0]
    assert "100,000 label files" in line and "**7.1 s** (target <= 30 s: met)" in line
    assert "NOT met" in tools_lines(({"files": 100_000, "seconds": 31.0, "problems": 5}, None))[0]
    assert tools_lines((None, "failed: OSError: disk full")) == ["Dataset tools: failed: OSError: disk full."]


def test_classifier_and_transfer_rows_say_whether_the_target_is_met():
    from bench.run import transfer_lines
    result = {"classifier": {"top1": .9875, "top2": .995, "train_s": 305.1}, "iterations": 300,
              "detectors": {"scratch": {"map": .357, "train_s": 185}, "frozen": {"map": .597, "train_s": 100},
                            "slowed": {"map": .630, "train_s": 155}}}
    classifier, transfer = transfer_lines((result, None))
    assert "top-1 **0.988** (target >= 0.95: met)" in classifier
    assert "from scratch 0.357 (185 s)" in transfer and "frozen 0.597" in transfer and "slowed 0.630" in transfer
    result["classifier"]["top1"] = .9
    assert "NOT met" in transfer_lines((result, None))[0]
    assert transfer_lines((None, "failed: X")) == ["Classifier and transfer learning: failed: X."]


def test_peers_table_ratios_and_targets():
    from bench import bench_peers
    ms = {"pause": {"pydarknet": [40.0, 44.0, 42.0], "ONNX Runtime": [30.0, 30.0, 30.0], "OpenVINO": [42.0] * 3,
                    "OpenCV DNN": [60.0] * 3},
          "back to back": {"pydarknet": [30.0] * 3, "ONNX Runtime": [31.0] * 3, "OpenVINO": [29.0] * 3}}
    result = {"name": "yolov3-tiny", "size": 416, "modes": ("pause", "back to back"), "ms": ms,
              "labels": {"ONNX Runtime": "ONNX Runtime 1.0"}, "errors": {"OpenCV DNN": "x"}, "l2": {"OpenVINO": 2e-8}}
    table = bench_peers.table([result])
    assert table[2] == ("| yolov3-tiny 416 | pause | 3 | 42.0 (40.0-44.0) | 30.0 (30.0-30.0) | 42.0 (42.0-42.0) "
                        "| 60.0 (60.0-60.0) | 1.40 | 1.00 | 0.70 |")
    assert table[3].endswith("| 0.97 | 1.03 | - |")
    assert "- yolov3-tiny: OpenCV DNN: x" in table and "- ONNX Runtime 1.0: " + bench_peers.SETTINGS[
        "ONNX Runtime"] in table
    targets = bench_peers.target_lines([result])
    assert "- yolov3-tiny pause: <= 1.0x ONNX Runtime (goal 0.8x): 1.40, NOT met" in targets
    assert "- yolov3-tiny pause: <= 0.9x OpenCV DNN: 0.70, met" in targets
    assert "- yolov3-tiny back to back: <= 1.0x ONNX Runtime: 0.97, met" in targets
    assert "- yolov3-tiny batch 8: <= 1.0x OpenVINO: not timed" in targets
    assert targets[-1] == "- yolov3-tiny: pydarknet after a pause <= 1.15x its own back to back: 1.40, NOT met"


def test_gemm_rate_line():
    from bench import bench_peers
    rate = {"name": "yolov3", "size": 416, "peak": (160.0, "2 cores x ..."),
            "result": {"gflop": 66.0, "ours_ms": 600.0, "blas_ms": 800.0, "layers": 75}}
    line, = bench_peers.gemm_rate_lines(rate)
    assert "its 75 convolutions, 66.0 GFLOP" in line and "pydarknet 110 GFLOP/s (600 ms" in line
    assert "OpenBLAS sgemm on the same im2col GEMMs, 2 threads, best of 3: 82 GFLOP/s (800 ms" in line
    assert "pydarknet / OpenBLAS 1.33. Paper peak: 2 cores x ...; pydarknet at 69% of it, OpenBLAS at 52% (" in line
    assert bench_peers.gemm_rate_lines({**rate, "result": "ImportError: x"}) == [
        "GEMM rate: not measured (ImportError: x)"]
