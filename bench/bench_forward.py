"""Benchmark: batch-1 forward passes, pydarknet against OpenCV DNN, side by side in one run.

Both read the same cfg (only [net] width/height changed) and the same .weights file written by pydarknet, and run
the same seeded input. Each side is warmed up first (numba's JIT or cache load, OpenCV's network setup), then the
repetitions are interleaved (pydarknet, OpenCV, pydarknet, OpenCV, ...) so that load from other processes on this
noisy machine falls on both; the medians are compared. OpenCV runs in a process of its own: in one process the two
libraries' idle BLAS and worker threads took the two cores from each other (OpenCV's yolov3-tiny went from 70 to
120 ms beside pydarknet), which would have flattered the ratio.

Denormals: OpenCV's Net::forward runs under FPDenormalsIgnoreHintScope (FTZ/DAZ set), and pydarknet flushes
denormals to zero in its fused bias/activation pass, so neither side pays the ~10x microcode penalty that random
weights can trigger. After timing, `denormals` counts denormal values left in pydarknet's layer outputs (expected 0).

    python -m bench.bench_forward      # prints one line per case
    from bench.bench_forward import run, CASES
"""
import contextlib
import multiprocessing
import os
import re
import statistics
import tempfile
import time

import numpy as np


from pydarknet.cfg import read_cfg
from pydarknet.network import Network
from pydarknet.weights import sane_random_weights, save_weights

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# (cfg, input size, warm-up runs per side, timed repetitions per side, seconds after which the repetitions stop
# early, at 3 or more): about 2 minutes on the quiet 2-core machine, under 5 on a loaded one
CASES = [
    ("yolov3-tiny", 416, 3, 15, 30),
    ("yolov3", 416, 1, 7, 90),
    ("yolov3", 608, 1, 5, 120),
    ("yolov2", 416, 1, 7, 60),
    ("yolov1-tiny", 448, 2, 11, 30),     # OpenCV has no [detection] layer: its row says so
]
# the same cases again with one core taken by a spinning process (busy_core)
BUSY_CASES = [
    ("yolov3-tiny", 416, 3, 15, 30),
    ("yolov3", 416, 1, 7, 90),
]
MIN_REPEATS = 3
PAUSE_S = 0.1   # before each timed pass, so that the other side's idle threads have gone to sleep
FLT_MIN = np.finfo(np.float32).tiny


def bench_weights(net, seed=0):
    """sane_random_weights: convolutions at half the He scale. Timing depends on the values only through denormals,
    which both sides flush."""
    return sane_random_weights(net, seed)


def resized_cfg(name, size, folder):
    """cfg/<name>.cfg with [net] width and height set to size, written into folder (OpenCV reads it from there)."""
    text = open(os.path.join(ROOT, "cfg", f"{name}.cfg")).read()
    text, n_w = re.subn(r"(?m)^width\s*=\s*\d+", f"width={size}", text, count=1)
    text, n_h = re.subn(r"(?m)^height\s*=\s*\d+", f"height={size}", text, count=1)
    if n_w != 1 or n_h != 1:
        raise ValueError(f"cfg/{name}.cfg: no width=/height= line to change")
    path = os.path.join(folder, f"{name}-{size}.cfg")
    with open(path, "w") as f:
        f.write(text)
    return path


def opencv_net(cfg, weights):
    import cv2
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def _opencv_worker(conn, cfg, weights, blob):
    """The OpenCV side, in its own process: answers each request with the milliseconds of one forward pass, after
    a first answer that is None or the last line of OpenCV's error."""
    try:
        net = opencv_net(cfg, weights)
        outputs = list(net.getUnconnectedOutLayersNames())
    except Exception as e:  # noqa: BLE001  (whatever OpenCV raises, its last line is the row's note)
        conn.send(str(e).strip().splitlines()[-1])
        return
    conn.send(None)
    while conn.recv():
        start = time.perf_counter()
        net.setInput(blob)   # the blob itself: no blobFromImage scaling or channel swap
        net.forward(outputs)
        conn.send((time.perf_counter() - start) * 1e3)


class OpenCVProcess:
    def __init__(self, cfg, weights, blob):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_opencv_worker, args=(child, cfg, weights, blob), daemon=True)
        self.process.start()
        self.error = self.conn.recv()

    def __call__(self):
        time.sleep(PAUSE_S)
        self.conn.send(True)
        return self.conn.recv()

    def close(self):
        if self.error is None:
            self.conn.send(False)
        self.process.join(30)


def _spin():
    while True:
        pass


class busy_core:
    """A context in which one background process spins (`while True: pass`), taking one core."""

    def __enter__(self):
        self.process = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
        self.process.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.join(10)


def denormal_count(net):
    """Denormal float32 values left in pydarknet's layer outputs after the last forward pass."""
    count = 0
    for i in range(len(net.layers)):
        out = net.layer_output(i)
        count += int(np.count_nonzero((np.abs(out) < FLT_MIN) & (out != 0)))
    return count


def run_case(name, size, warmup, repeats, budget_s, folder, seed=0, log=None, busy=False):
    """Time one case; returns a dict with both sides' times in ms (all repetitions) and their medians; cv None and
    cv_error OpenCV's error line when OpenCV cannot read the cfg."""
    cfg = resized_cfg(name, size, folder)
    net = Network(read_cfg(cfg), cfg)
    bench_weights(net, seed)
    weights = os.path.join(folder, f"{name}-{size}.weights")
    save_weights(net, weights)
    blob = np.random.default_rng(seed).random((1, 3, size, size), dtype=np.float32)   # NCHW in [0, 1)
    image = blob[0]

    theirs = OpenCVProcess(cfg, weights, blob)
    cv_error = theirs.error
    if cv_error is not None:
        theirs.close()
        log and log(f"  {name} {size}: OpenCV cannot read it: {theirs.error}")
        theirs = lambda: None  # noqa: E731  (pydarknet alone)

    def ours():
        time.sleep(PAUSE_S)
        start = time.perf_counter()
        net.predict(image)
        return (time.perf_counter() - start) * 1e3

    for _ in range(warmup):
        ours()
        theirs()
    ours_ms, cv_ms = [], []
    start = time.perf_counter()
    for i in range(repeats):
        ours_ms.append(ours())
        cv_ms.append(theirs())
        if log:
            log(f"  {name} {size} rep {i + 1}/{repeats}: pydarknet {ours_ms[-1]:.0f} ms"
                + (f", OpenCV {cv_ms[-1]:.0f} ms" if cv_ms[-1] is not None else "")
                + (" (one core busy)" if busy else ""))
        if i + 1 >= MIN_REPEATS and time.perf_counter() - start > budget_s:
            break
    if cv_error is None:
        theirs.close()
    result = {
        "work": f"{name} forward, {size}x{size}, batch 1" + (", one core busy" if busy else ""), "busy": busy,
        "cv_error": cv_error,
        "name": name, "size": size, "repeats": len(ours_ms),
        "ours_ms": ours_ms, "cv_ms": [] if cv_error else cv_ms,
        "ours": statistics.median(ours_ms), "cv": None if cv_error else statistics.median(cv_ms),
        "denormals": denormal_count(net),
        "bflops": sum(layer.bflops or 0 for layer in net.layers),
    }
    result["ratio"] = result["ours"] / result["cv"] if result["cv"] else None
    os.unlink(weights)
    return result


def run(cases=CASES, log=None, busy=False):
    """All cases, in order, in one temporary folder; a list of run_case dicts. busy: with one core taken by a
    spinning process, started before the first case and killed after the last."""
    with tempfile.TemporaryDirectory(prefix="pydarknet-bench-") as folder:
        with busy_core() if busy else contextlib.nullcontext():
            return [run_case(*case, folder, log=log, busy=busy) for case in cases]


def main():
    for r in run(log=print):
        print(f"{r['work']}: pydarknet {r['ours']:.0f} ms, "
              + (f"OpenCV {r['cv']:.0f} ms, ratio {r['ratio']:.2f}" if r["cv"] else f"OpenCV: {r['cv_error']}"))


if __name__ == "__main__":
    main()
