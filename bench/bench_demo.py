"""`detector demo`'s pipeline against the network alone: yolov3-tiny 416 (random weights) on a 200-frame 640x480
MJPG video (target: the whole demo at >= 0.9x the frames/s of the forward passes alone).

    python -m bench.bench_demo               # prints one result line
    from bench.bench_demo import run         # run(log=None, frames=200, repeats=2) -> {"forward_fps", "demo_fps", ...}

(a) forward passes alone: the same frames, decoded and letterboxed beforehand (not timed), `net.predict` on each;
(b) the whole `pydarknet detector demo ... -out_filename out.avi`: its closing line's frames/s (first frame
detected to last; the network load and the file's rename are outside it, as they are outside (a)).
Each run is a process of its own, interleaved a, b, a, b (the machine is noisy); medians.
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

FRAMES = 200
WIDTH, HEIGHT = 640, 480
CFG = os.path.join(ROOT, "cfg", "yolov3-tiny.cfg")       # width=height=416
DATA = os.path.join(ROOT, "cfg", "coco.data")
TARGET = 0.9
CLOSING = re.compile(r"^Demo: (\d+) frames in ([\d.]+) s, ([\d.]+) frames/s$", re.M)


def write_video(path, frames=FRAMES):
    """A 640x480 MJPG video of shapes: ten 480x480 samples of the embedded dataset, side-padded with grey, cycled."""
    import cv2
    import numpy as np
    from pydarknet.data.shapes import sample
    pictures = []
    for i in range(10):
        image, _ = sample(2026, i, size=HEIGHT)
        canvas = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        canvas[:, (WIDTH - HEIGHT) // 2:(WIDTH + HEIGHT) // 2] = image
        pictures.append(canvas)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (WIDTH, HEIGHT))
    for i in range(frames):
        writer.write(pictures[i % len(pictures)])
    writer.release()


def forward_only(video, weights):
    """(a), in its own process, set up as the command's (cli.prepare_process): frames/s of net.predict over the
    video's letterboxed frames."""
    from pydarknet import cli
    cli.prepare_process()
    import cv2
    from pydarknet.detector.pipeline import network_input
    from pydarknet.network import load_network
    from pydarknet.image import image_from_array
    net = load_network(CFG, weights)
    capture = cv2.VideoCapture(video)
    sized = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        sized.append(network_input(net, image_from_array(frame)))
    start = time.perf_counter()
    for x in sized:
        net.predict(x)
    seconds = time.perf_counter() - start
    print(f"forward: {len(sized)} frames in {seconds:.3f} s")
    return len(sized) / seconds


def run_forward(video, weights):
    done = subprocess.run([sys.executable, "-m", "bench.bench_demo", "--forward", video, weights], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    match = re.search(r"forward: (\d+) frames in ([\d.]+) s", done.stdout)
    if done.returncode or not match:
        raise RuntimeError(f"forward passes failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return int(match.group(1)) / float(match.group(2))


def run_pipeline(video, weights, folder):
    done = subprocess.run([sys.executable, "-m", "pydarknet", "detector", "demo", DATA, CFG, weights, video,
                           "-out_filename", os.path.join(folder, "out.avi")], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    match = CLOSING.search(done.stderr)
    if done.returncode or not match:
        raise RuntimeError(f"detector demo failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return float(match.group(3))


def run(log=None, frames=FRAMES, repeats=2):
    with tempfile.TemporaryDirectory() as folder:
        video, weights = os.path.join(folder, "in.avi"), os.path.join(folder, "yolov3-tiny.weights")
        write_video(video, frames)
        subprocess.run([sys.executable, "-m", "pydarknet", "randweights", CFG, weights], cwd=ROOT, check=True,
                       capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT))
        run_forward(video, weights)         # warm-up: numba's cache, the OS's file cache
        forward, demo = [], []
        for _ in range(repeats):
            forward.append(run_forward(video, weights))
            demo.append(run_pipeline(video, weights, folder))
    result = {"frames": frames, "repeats": repeats, "forward_fps": statistics.median(forward),
              "demo_fps": statistics.median(demo), "forward_runs": forward, "demo_runs": demo}
    result["ratio"] = result["demo_fps"] / result["forward_fps"]
    log and log(result_line(result))
    return result


def result_line(r):
    met = "met" if r["ratio"] >= TARGET else "NOT met"
    runs = (", ".join(f"{v:.1f}" for v in r["forward_runs"]), ", ".join(f"{v:.1f}" for v in r["demo_runs"]))
    return (f"detector demo, yolov3-tiny 416, {r['frames']} frames 640x480 MJPG: forward alone "
            f"{r['forward_fps']:.1f} frames/s, whole demo {r['demo_fps']:.1f} frames/s, ratio {r['ratio']:.2f} "
            f"(target >= {TARGET}: {met}; medians of {r['repeats']}, runs a {runs[0]} / b {runs[1]})")


def main():
    run(log=print)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--forward"]:
        forward_only(*sys.argv[2:4])
    else:
        main()
