"""Benchmark: do the small YOLO v1, v2 and v3 networks learn the embedded shapes dataset, and how fast?

    python bench/bench_learn.py [yolov3-tiny-shapes yolov2-tiny-shapes yolov1-tiny-shapes]   (make bench-learn)

For each cfg: generate the dataset once (out/bench-shapes), train from scratch with `detector train` (seed 1, the
cfg's max_batches), then `detector map` on the validation images. Writes a "## Learning" section into
bench/RESULTS.md with the wall-clock time of each phase and the mAP@0.5 reached, against the issue's bars: the
v3 demo network mAP@0.5 >= 0.80 within 20 minutes, the v2- and v1-style networks >= 0.50.
"""
import contextlib
import datetime
import io
import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pydarknet  # noqa: E402,F401  (first: thread-pool policies before numpy loads OpenBLAS)
from pydarknet.evaluate import detector_map  # noqa: E402
from pydarknet.shapes import generate  # noqa: E402
from pydarknet.trainer import train_detector  # noqa: E402
from bench.results import write_section  # noqa: E402

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


def section(rows):
    lines = [SECTION, "", f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC by `make bench-learn` "
             "(`python bench/bench_learn.py`): 2,000 generated images at 160x160 (1,600 train, 400 valid), "
             "training from scratch with seed 1 for the cfg's max_batches, then `detector map`.", "",
             "| cfg | training | mAP@0.5 | bar | met |", "|---|---:|---:|---|---|"]
    for r in rows:
        bar, seconds = BARS.get(r["name"], (None, None))
        met = bar is not None and r["map"] >= bar and (seconds is None or r["total_s"] <= seconds)
        bar_text = f">= {bar:.2f}" + (f" within {seconds // 60} min" if seconds else "") if bar else "-"
        lines.append(f"| {r['name']} | {r['train_s'] / 60:.1f} min | {r['map']:.3f} | {bar_text} | "
                     f"{'met' if met else 'not met'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    write_section(section(run(sys.argv[1:] or list(BARS))))
