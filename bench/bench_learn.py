"""Benchmark: do the small YOLO v1, v2 and v3 networks learn the embedded shapes dataset, and how fast?

    python -m bench.bench_learn [yolov3-tiny-shapes yolov2-tiny-shapes yolov1-tiny-shapes]   (make bench-learn)
    make bench-learn CFGS=yolov1-tiny-shapes

For each cfg: generate the dataset once (out/bench-shapes), train from scratch with `detector train` (seed 1, the
cfg's max_batches), then `detector map` on the validation images. Writes its rows into the "## Learning" section
of bench/RESULTS.md, with the training time and the mAP@0.5 reached, against the issue's bars: the v3 demo network
mAP@0.5 >= 0.80 within 20 minutes, the v2- and v1-style networks >= 0.50.
"""
import contextlib
import datetime
import io
import os
import sys
import time


import pydarknet  # noqa: F401  (first: thread-pool policies before numpy loads OpenBLAS)
from pydarknet.detector.map import detector_map
from pydarknet.data.shapes import generate
from pydarknet.detector.train import train_detector
from bench.results import RESULTS, read, split_sections, write_section

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

BARS = {"yolov3-tiny-shapes": (.80, 20 * 60), "yolov2-tiny-shapes": (.50, None), "yolov1-tiny-shapes": (.50, None)}
SECTION = "## Learning"


def run(names, folder=os.path.join(ROOT, "out", "bench-shapes"), log=print):
    start = time.time()
    if not os.path.exists(os.path.join(folder, "shapes.data")):
        generate(folder, n=2000, size=160, seed=1)
    generated = time.time() - start
    rows = []
    for name in names:
        cfg = os.path.join(ROOT, "cfg", f"{name}.cfg")
        t0 = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            weights = train_detector(os.path.join(folder, "shapes.data"), cfg, seed=1,
                                     chart=os.path.join(folder, f"{name}-chart.png"))
        trained = time.time() - t0
        t0 = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            result = detector_map(os.path.join(folder, "shapes.data"), cfg, weights)
        evaluated = time.time() - t0
        rows.append({"name": name, "train_s": trained, "map_s": evaluated, "map": result["map"],
                     "total_s": generated + trained + evaluated})
        log(f"{name}: trained in {trained:.0f} s, mAP@0.5 {result['map']:.3f}")
    return rows


HEADER = ["| cfg | measured (UTC) | training | mAP@0.5 | bar | met |", "|---|---|---:|---:|---|---|"]


def section(rows, old=""):
    """The Learning section with a row for each cfg just run; the rows of cfgs not run this time, and the notes
    after the table, are kept from the old section."""
    now = f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M}"
    table = {}
    for r in rows:
        bar, seconds = BARS.get(r["name"], (None, None))
        met = bar is not None and r["map"] >= bar and (seconds is None or r["total_s"] <= seconds)
        bar_text = f">= {bar:.2f}" + (f" within {seconds // 60} min" if seconds else "") if bar else "-"
        table[r["name"]] = (f"| {r['name']} | {now} | {r['train_s'] / 60:.1f} min | {r['map']:.3f} | {bar_text} | "
                            f"{'met' if met else 'not met'} |")
    old_lines = old.splitlines()
    start = next((i for i, line in enumerate(old_lines) if line.startswith("|")), len(old_lines))
    end = next((i for i in range(start, len(old_lines)) if not old_lines[i].startswith("|")), len(old_lines))
    kept = [line for line in old_lines[start + 2:end] if _name(line) not in table]     # the first table's rows
    notes = old_lines[end:]
    lines = [SECTION, "", "`make bench-learn` (`python -m bench.bench_learn [CFG ...]`): 2,000 generated images at "
             "160x160 (1,600 train, 400 valid), training from scratch with seed 1 for the cfg's max_batches, then "
             "`detector map`. A run replaces the rows of the cfgs it trained.", ""]
    rank = {name: i for i, name in enumerate(BARS)}
    merged = sorted(kept + list(table.values()), key=lambda line: rank.get(_name(line), len(rank)))
    return "\n".join(lines + HEADER + merged + notes) + "\n"


def _name(row):
    """The cfg a table row is about: the first word of its first cell."""
    return row.split("|")[1].split()[0]


def old_section():
    if not os.path.exists(RESULTS):
        return ""
    return next((body for heading, body in split_sections(read(RESULTS))[1] if heading.strip() == SECTION), "")


if __name__ == "__main__":
    write_section(section(run(sys.argv[1:] or list(BARS)), old_section()))
