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
    assert rows[0] == "| yolov3-tiny-shapes (demo) | 2026-01-01 00:00 | 2000 its | 0.944 | >= 0.80 within 20 min | met |"
    assert rows[1].startswith("| yolov2-tiny-shapes |") and rows[1].endswith("| 9.0 min | 0.420 | >= 0.50 | not met |")
    assert rows[2].startswith("| yolov1-tiny-shapes |") and rows[2].endswith("| 10.0 min | 0.610 | >= 0.50 | met |")
    assert len(rows) == 3 and new.count("| cfg |") == 1
    assert new.rstrip().endswith("notes on the demo run\n\n| another | table |\n|---|---|\n| yolov1-tiny-shapes | kept |")
