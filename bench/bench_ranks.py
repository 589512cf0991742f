"""`make demo`'s training (yolov3-tiny-shapes on the 2,000-image shapes set, seed 1) as 1 process x 2 threads
against 2 MPI ranks x 1 thread with `-sync allreduce` (issue 26 item 3): images/s over the run, its wall time, and
the mAP@0.5 of the final weights (`detector map`, one process each).

    python -m bench.bench_ranks [MAX_BATCHES]     # 2000: the whole demo run (2 x ~7 min); fewer for a quick look

Each side is a process of its own (the ranks, mpiexec's), one after the other on a quiet machine.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CFG = os.path.join(ROOT, "cfg", "yolov3-tiny-shapes.cfg")
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
LINE = re.compile(r"^(\d+): .* ([\d.]+) images/s", re.M)
MAP = re.compile(r"mean average precision \(mAP@0\.50\) = ([\d.]+)")


def environment():
    return dict(os.environ, PYTHONPATH=ROOT, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def side(folder, data, max_batches, ranks):
    """One training run; (images/s as its last line prints it, wall seconds, mAP of its final weights)."""
    os.makedirs(folder)
    with open(data) as f:
        lines = [line for line in f.read().splitlines() if not line.startswith("backup")]
    side_data = os.path.join(folder, "train.data")
    with open(side_data, "w") as f:
        f.write("\n".join(lines + [f"backup={folder}"]) + "\n")
    command = [sys.executable, "-m", "pydarknet", "detector", "train", side_data, CFG, "-seed", "1", "-chart", "",
               "-max_batches", str(max_batches), "-threads", str(2 // ranks)]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), "--bind-to", "none"] + command + ["-sync", "allreduce"]
    start = time.perf_counter()
    out = subprocess.run(command, env=environment(), capture_output=True, text=True, check=True, cwd=folder).stdout
    wall = time.perf_counter() - start
    rate = float(LINE.findall(out)[-1][1])
    weights = os.path.join(folder, "yolov3-tiny-shapes_final.weights")
    scored = subprocess.run([sys.executable, "-m", "pydarknet", "detector", "map", side_data, CFG, weights],
                            env=environment(), capture_output=True, text=True, check=True).stdout
    return rate, wall, float(MAP.search(scored).group(1))


def run(max_batches=2000):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pydarknet", "dataset", "shapes", os.path.join(tmp, "shapes"), "-n",
                        "2000", "-size", "160", "-seed", "1"], env=environment(), check=True, capture_output=True)
        data = os.path.join(tmp, "shapes", "shapes.data")
        one = side(os.path.join(tmp, "one"), data, max_batches, 1)
        two = side(os.path.join(tmp, "two"), data, max_batches, 2)
    return {"one": one, "two": two, "max_batches": max_batches}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    result = run(int(argv[0]) if argv else 2000)
    (r1, w1, m1), (r2, w2, m2) = result["one"], result["two"]
    print(f"| {result['max_batches']} iterations | 1 process x 2 threads: {r1:.1f} images/s, {w1:.0f} s, mAP {m1:.4f} "
          f"| 2 ranks x 1 thread (-sync allreduce): {r2:.1f} images/s, {w2:.0f} s, mAP {m2:.4f} | "
          f"ranks/process: {r2 / r1:.2f}x images/s |")


if __name__ == "__main__":
    main()
