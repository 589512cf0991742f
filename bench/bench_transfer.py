"""Classifier pre-training and transfer learning on the embedded data, each step a `pydarknet` process as a user
runs it (issue 14's rows).

    python -m bench.bench_transfer [ITERATIONS]     # prints the results (about 12 minutes on 2 cores)
    from bench.bench_transfer import run            # run(log=None, iterations=300, quick=False) -> dict

1. `dataset shapes-cls` (2,000 images) and `classifier train cfg/shapes-cls.cfg` from scratch (800 iterations):
   `classifier valid` gives top-1 (target 0.95) and top-2.
2. `partial` keeps its first nine layers (yolov3-tiny-shapes.cfg's own first nine).
3. `dataset shapes` (1,000 images) and `detector train cfg/yolov3-tiny-shapes.cfg` for ITERATIONS iterations
   three ways: from scratch; on the pre-trained prefix, frozen (stopbackward=1 in its last layer); on the prefix,
   slowed (learning_rate=0.1 in each of its layers). `detector map` on the valid images after each.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CLS_CFG = os.path.join(ROOT, "cfg", "shapes-cls.cfg")
DET_CFG = os.path.join(ROOT, "cfg", "yolov3-tiny-shapes.cfg")
PREFIX = 9              # layers shared by the two cfgs
ITERATIONS = 300
TARGET_TOP1 = 0.95


def pydarknet(*words, cwd):
    """One command in a process of its own; its stdout, and the seconds it took."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pydarknet", *map(str, words)], cwd=cwd, capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"pydarknet {words[0]} {words[1]} failed ({done.returncode}): {done.stderr[-400:]}")
    return done.stdout, time.perf_counter() - start


def detector_cfg(folder, name, edit):
    """yolov3-tiny-shapes.cfg with `edit(sections)` applied to its first PREFIX layer sections."""
    text = open(DET_CFG).read()
    head, *sections = re.split(r"(?m)^(?=\[)", text)
    net, layers = sections[0], sections[1:]
    layers[:PREFIX] = edit(layers[:PREFIX])
    path = os.path.join(folder, f"{name}.cfg")
    with open(path, "w") as f:
        f.write(head + net + "".join(layers))
    return path


def with_option(section, line):
    header, rest = section.split("\n", 1)
    return f"{header}\n{line}\n{rest}"


VARIANTS = {
    "scratch": (lambda layers: layers, False),
    "frozen": (lambda layers: layers[:-1] + [with_option(layers[-1], "stopbackward=1")], True),
    "slowed": (lambda layers: [with_option(s, "learning_rate=0.1") for s in layers], True),
}


def pretrain(folder, log, quick=False):
    """Step 1 and 2: the classifier, its top-1/top-2, and the prefix file."""
    pydarknet("dataset", "shapes-cls", "cls", "-n", 200 if quick else 2000, cwd=folder)
    data = os.path.join(folder, "cls", "shapes-cls.data")
    _, seconds = pydarknet("classifier", "train", data, CLS_CFG, "-seed", 1, "-chart", "",
                           *(("-max_batches", 20) if quick else ()), cwd=folder)
    weights = os.path.join(folder, "cls", "backup", "shapes-cls.weights")
    out, _ = pydarknet("classifier", "valid", data, CLS_CFG, weights, cwd=folder)
    _, top1, top2 = re.findall(r"^(\d+): top 1: ([\d.]+), top 2: ([\d.]+)$", out, re.M)[-1]
    log and log(f"  classifier: top-1 {float(top1):.3f}, top-2 {float(top2):.3f}, trained in {seconds:.0f} s")
    prefix = os.path.join(folder, f"shapes-cls.conv.{PREFIX}")
    pydarknet("partial", CLS_CFG, weights, prefix, PREFIX, cwd=folder)
    return {"top1": float(top1), "top2": float(top2), "train_s": seconds}, prefix


def fine_tune(folder, prefix, iterations, log, quick=False):
    """Step 3: mAP@0.5 after `iterations` for each variant."""
    pydarknet("dataset", "shapes", "det", "-n", 100 if quick else 1000, cwd=folder)
    data = os.path.join(folder, "det", "shapes.data")
    results = {}
    for name, (edit, uses_prefix) in VARIANTS.items():
        cfg = detector_cfg(folder, f"det-{name}", edit)
        start = [prefix] if uses_prefix else []
        _, seconds = pydarknet("detector", "train", data, cfg, *start, "-seed", 1, "-max_batches", iterations,
                               "-chart", "", cwd=folder)
        final = os.path.join(folder, "det", "backup", f"det-{name}_final.weights")
        out, _ = pydarknet("detector", "map", data, cfg, final, cwd=folder)
        value = float(re.search(r"mean average precision \(mAP@0\.50\) = ([\d.]+)", out)[1])
        results[name] = {"map": value, "train_s": seconds}
        log and log(f"  detector {name}: mAP@0.5 {value:.3f} after {iterations} iterations ({seconds:.0f} s)")
    return results


def run(log=None, iterations=ITERATIONS, quick=False):
    """quick: a smoke run (small datasets, 20 classifier iterations), not a measurement."""
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as folder:
        classifier, prefix = pretrain(folder, log, quick)
        detectors = fine_tune(folder, prefix, iterations, log, quick)
    return {"classifier": classifier, "iterations": iterations, "detectors": detectors}


if __name__ == "__main__":
    print(run(log=print, iterations=int(sys.argv[1]) if len(sys.argv) > 1 else ITERATIONS))


def result_lines(r):
    """The two rows of make bench: the classifier against its 0.95 target, the detectors' mAP."""
    c = r["classifier"]
    met = "met" if c["top1"] >= TARGET_TOP1 else "NOT met"
    d = r["detectors"]
    return [f"Classifier: `classifier train cfg/shapes-cls.cfg` from scratch on `dataset shapes-cls` (2,000 images, "
            f"800 iterations, {c['train_s']:.0f} s): `classifier valid` top-1 **{c['top1']:.3f}** (target >= "
            f"{TARGET_TOP1}: {met}), top-2 {c['top2']:.3f}.",
            f"Transfer learning (`bench/bench_transfer.py`): yolov3-tiny-shapes mAP@0.5 after {r['iterations']} "
            f"iterations: from scratch {d['scratch']['map']:.3f} ({d['scratch']['train_s']:.0f} s), on the "
            f"pre-trained prefix frozen {d['frozen']['map']:.3f} ({d['frozen']['train_s']:.0f} s), slowed "
            f"{d['slowed']['map']:.3f} ({d['slowed']['train_s']:.0f} s)."]
