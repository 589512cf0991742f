"""`pydarknet dataset check DATA -fast` on 100,000 label files of 5 lines (issue 12's target: <= 30 s here).

    python -m bench.bench_check [N]          # prints the seconds
    from bench.bench_check import run        # run(log=None, files=100_000) -> {"files", "seconds", "problems"}

The images are empty files (-fast does not decode them); one label file in 1,000 has a class out of range, so the
run also reports and lists problems. The whole command is timed in a process of its own, as a user meets it.
"""
import os
import subprocess
import sys
import tempfile
import time

FILES = 100_000
TARGET_S = 30.0


def write_dataset(root, files):
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "labels"))
    paths = []
    for i in range(files):
        image = os.path.join(root, "images", f"{i:06d}.jpg")
        open(image, "wb").close()
        lines = [f"{(i + k) % 3 if i % 1000 else 7} 0.{k + 2} 0.{k + 3} 0.1 0.2" for k in range(5)]
        with open(os.path.join(root, "labels", f"{i:06d}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        paths.append(image)
    with open(os.path.join(root, "train.txt"), "w") as f:
        f.write("\n".join(paths) + "\n")
    data = os.path.join(root, "big.data")
    with open(data, "w") as f:
        f.write(f"classes=3\ntrain={os.path.join(root, 'train.txt')}\n")
    return data


def run(log=None, files=FILES):
    with tempfile.TemporaryDirectory() as root:
        data = write_dataset(root, files)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pydarknet", "dataset", "check", data, "-fast"], cwd=root,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"dataset check failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    problems = sum(1 for line in done.stdout.splitlines() if line.startswith(root))
    log and log(f"  dataset check -fast, {files:,} label files: {seconds:.1f} s, {problems} problems reported")
    return {"files": files, "seconds": seconds, "problems": problems}


if __name__ == "__main__":
    print(run(log=print, files=int(sys.argv[1]) if len(sys.argv) > 1 else FILES))
