"""`make tune-demo`: `pydarknet tune` on the embedded shapes data, then the best trial beside trial 0.

    python examples/tune_demo.py [OUT]     # OUT defaults to out/tune-demo

Generates the shapes dataset (OUT/shapes: 1,000 images at 160x160, seed 1, 100 of them the validation list), then
runs `pydarknet tune` on cfg/yolov3-tiny-shapes.cfg in the default space ([net]'s optimiser keys and colour
augmentation): 8 trials of 150 iterations at batch 16, reports (validation loss, mAP@0.5) every 50 iterations on
the 100 validation images, TPE sampling, median pruning on the validation loss, the cfg's own values as trial 0. The
study lives in OUT/study (trials.csv, best.cfg, history.png, importances.png, reports.png); run again, it goes on
with the same study (delete OUT/study to start over). Ends with the best trial's validation loss and mAP@0.5 beside
trial 0's, and the minutes it took.
"""
import csv
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "cfg", "yolov3-tiny-shapes.cfg")
TRIALS, ITERATIONS, REPORT_EVERY = 8, 150, 50


def dataset(out):
    """The shapes data (made once): 900 training images, 100 validation images."""
    from pydarknet.data import shapes
    data = os.path.join(out, "shapes", "shapes.data")
    if not os.path.exists(data):
        print("tune-demo: generating 1,000 shapes images at 160x160", flush=True)
        data = shapes.generate(os.path.join(out, "shapes"), n=1000, size=160, seed=1, valid_fraction=0.1).data
    return data


def summary(folder):
    """The best trial's line beside trial 0's, from trials.csv."""
    with open(os.path.join(folder, "trials.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = sorted(complete, key=lambda r: (-float(r["fitness"]), float(r["validation_loss"])))[0]
    first = rows[0]
    lines = []
    for name, row in (("trial 0 (the cfg's values)", first), (f"best: trial {best['number']}", best)):
        shown = (f"validation loss {float(row['validation_loss']):.4f}, mAP@0.5 {float(row['map50']):.4f}"
                 if row["validation_loss"] else row["state"])
        lines.append(f"  {name:<27} {shown} ({row['state'].lower()})")
    return lines


def main(out="out/tune-demo"):
    started = time.time()
    os.makedirs(out, exist_ok=True)
    data = dataset(out)
    folder = os.path.join(out, "study")
    words = [sys.executable, "-m", "pydarknet", "tune", data, CFG, "-trials", str(TRIALS), "-iterations",
             str(ITERATIONS), "-map_every", str(REPORT_EVERY), "-sampler", "tpe", "-pruner", "median", "-seed", "1",
             "-study", folder]
    print("tune-demo: " + " ".join(words[1:]), flush=True)
    code = subprocess.call(words)
    if code:
        return code
    print("\n".join(["tune-demo:"] + summary(folder)))
    print(f"tune-demo: {(time.time() - started) / 60:.1f} minutes; pictures in {folder}: history.png, "
          f"importances.png, reports.png; best.cfg there trains in full with `pydarknet detector train`")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
