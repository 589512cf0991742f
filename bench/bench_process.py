"""Benchmark: whole processes. `python -m pydarknet detect CFG WEIGHTS PHOTO` against the same detection written
with OpenCV DNN (bench/opencv_detect.py), each a fresh process: cold-start wall time and peak resident memory.

Wall time: the process from spawn to exit (timed by bench/peak_rss.py, which starts it), a warm-up run of each
first (numba's cache on disk warm, the files in the page cache), then the repetitions alternated (pydarknet,
OpenCV, ...); medians. Peak memory: ru_maxrss of the child (os.wait4 in bench/peak_rss.py), in MiB, the median of
the runs.

    from bench.bench_process import run     # run(log=None, repeats=5) -> rows for bench/run.py
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time


from bench.bench_forward import bench_weights, resized_cfg
from pydarknet.cfg import read_cfg
from pydarknet.network import Network
from pydarknet.weights import save_weights

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

OPENCV_SCRIPT = os.path.join(ROOT, "bench", "opencv_detect.py")
PEAK_RSS = os.path.join(ROOT, "bench", "peak_rss.py")
# (cfg, size, what is measured): yolov3-tiny for both, yolov3 416 for memory only (its time is the forward table's)
CASES = [("yolov3-tiny", 416, ("time", "memory")), ("yolov3", 416, ("memory",))]
PAUSE_S = 0.1


def reference_folder():
    """PYDARKNET_REFERENCE, default ../shared/darknet relative to the repository root."""
    return os.environ.get("PYDARKNET_REFERENCE") or os.path.join(ROOT, "..", "shared", "darknet")


def photo():
    return os.path.join(reference_folder(), "images", "dog.jpg")


def measure(command, cwd, env=None):
    """(wall ms, peak RSS MiB) of one child process, through bench/peak_rss.py (see there why); raises with the
    child's last stderr line when it fails."""
    time.sleep(PAUSE_S)
    out = subprocess.run([sys.executable, PEAK_RSS] + command, cwd=cwd, env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    ms, kib, code = out[0].split()
    if int(code) != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exit {code}: {out[1] if len(out) > 1 else 'no output'}")
    return float(ms), int(kib) / 1024     # Linux: KiB


def run_case(name, size, what, folder, repeats, log):
    cfg = resized_cfg(name, size, folder)
    net = Network(read_cfg(cfg), cfg)
    bench_weights(net)
    weights = os.path.join(folder, f"{name}-{size}.weights")
    save_weights(net, weights)
    del net
    image = photo()
    ours = [sys.executable, "-m", "pydarknet", "detect", cfg, weights, image]
    theirs = [sys.executable, OPENCV_SCRIPT, cfg, weights, image, os.path.join(folder, "opencv.jpg")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    runs = {"pydarknet": [], "OpenCV": []}
    n = repeats if "time" in what else 1
    for i in range(n + 1):        # the first of each is the warm-up
        for side, command in (("pydarknet", ours), ("OpenCV", theirs)):
            ms, mib = measure(command, folder, env)    # predictions.jpg lands in folder
            if i:
                runs[side].append((ms, mib))
        if i and log:
            log(f"  {name} {size} process rep {i}/{n}: pydarknet {runs['pydarknet'][-1][0]:,.0f} ms "
                f"{runs['pydarknet'][-1][1]:,.0f} MiB, OpenCV {runs['OpenCV'][-1][0]:,.0f} ms "
                f"{runs['OpenCV'][-1][1]:,.0f} MiB")
    os.unlink(weights)
    row = {"name": name, "size": size, "what": what, "repeats": n, "runs": runs}
    for side, key in (("pydarknet", "ours"), ("OpenCV", "cv")):
        row[key + "_ms"] = statistics.median(ms for ms, _ in runs[side])
        row[key + "_mib"] = statistics.median(mib for _, mib in runs[side])
    row["ratio_ms"] = row["ours_ms"] / row["cv_ms"]
    row["ratio_mib"] = row["ours_mib"] / row["cv_mib"]
    return row


def run(log=None, repeats=5, cases=CASES):
    """Rows for the cases; a row with "why_not" instead when the photo is absent or a side fails."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="pydarknet-bench-") as folder:
        for name, size, what in cases:
            if not os.path.exists(photo()):
                rows.append({"name": name, "size": size, "what": what,
                             "why_not": f"skipped: no {photo()} (set PYDARKNET_REFERENCE)"})
                continue
            try:
                rows.append(run_case(name, size, what, folder, repeats, log))
            except Exception as e:  # noqa: BLE001  (a failed case is a row that says why; the rest still run)
                rows.append({"name": name, "size": size, "what": what, "why_not": f"failed: {e}"})
    return rows


if __name__ == "__main__":
    for r in run(log=print, repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(r.get("why_not") or f"{r['name']} {r['size']}: {r['ours_ms']:,.0f} / {r['cv_ms']:,.0f} ms "
              f"({r['ratio_ms']:.2f}), {r['ours_mib']:,.0f} / {r['cv_mib']:,.0f} MiB ({r['ratio_mib']:.2f})")
