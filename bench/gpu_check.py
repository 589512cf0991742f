"""make gpu-check: every GPU test, then the GPU benchmark table, on a GPU machine, from the source tree.

    python -m bench.gpu_check [--out FILE] [--skip-tests] [--budget SECONDS]

1. pytest on every test marked gpu (needs a device: the golden-parity suites' GPU cases, the device choice) or
   nvrtc (compiles kernels.cu); tests whose packages or reference material are missing skip.
2. yolov3.cfg at 416 (sane random weights, the dog photo letterboxed, or the shapes sample without the reference
   material): per-layer relative L2 error of the GPU's outputs against the CPU's; forward latency at batch 1 and
   throughput at batch 64, in exact float32 and with TF32 GEMMs (PYDARKNET_GPU_MATH=tf32), and how far TF32's
   yolo heads and detections are from float32's.
3. yolov3-tiny.cfg at 416, batch 64: training images/s (forward, loss, backward, update on random images and
   boxes).
4. The peer, side by side in the same run: PyTorch (the machine's own, cuDNN) on bench/torch_net.py's translation of
   the same cfgs and weights: yolov3 forward at batch 64 (fp32, and TF32 allowed) and yolov3-tiny training at
   batch 64 (the same loss and SGD), with pydarknet's ratio to it.
5. Several ranks (bench/gpu_parallel.py, under two minutes): NCCL's calls on one rank, two ranks training on the
   one GPU through host memory (PYDARKNET_NCCL=0), NCCL across two GPUs (skipped on a one-GPU machine).
6. The device memory peak (CuPy's memory pool holds what the largest step needed).

The table goes to stdout, into a "## GPU" section of bench/RESULTS.md (with the date and the device's name), and
to --out FILE. Each phase is skipped once the time budget (default 450 s) is spent, and says so.
"""
import argparse
import contextlib
import datetime
import io
import os
import subprocess
import sys
import tempfile
import time


import numpy as np

import pydarknet  # noqa: F401  (first: thread-pool policies before numpy loads OpenBLAS)
from pydarknet import backend
from pydarknet.backend import to_host
from pydarknet.nms import do_nms_sort
from pydarknet.cfg import read_cfg
from pydarknet.image import letterbox_image, load_image_color
from pydarknet.network import Network
from pydarknet.weights import load_weights, sane_random_weights, save_weights
from bench.gpu_parallel import phase as parallel_phase
from bench.results import write_section

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SECTION = "## GPU"
TESTS = ["-m", "gpu or nvrtc", "tests"]        # the markers of pyproject.toml, over the whole tests/ folder
TARGETS = {"fp32_forward": 400, "tf32_forward": 1200, "train": 500}     # images/s on an H200-class GPU


def reference_dir():
    return os.environ.get("PYDARKNET_REFERENCE", os.path.join(ROOT, "..", "shared", "darknet"))


def run_tests(log):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
    start = time.time()
    run = subprocess.run(command + TESTS, cwd=ROOT, env=env, capture_output=True, text=True)
    log(run.stdout[-6000:] + run.stderr[-3000:])
    summary = [line for line in run.stdout.splitlines() if " passed" in line or " failed" in line or "error" in line]
    return {"rc": run.returncode, "summary": summary[-1] if summary else "no summary", "seconds": time.time() - start}


def sync():
    backend._gpu_module().xp.cuda.Device().synchronize()


def timed(f, repeats):
    """Median seconds of f() over `repeats` runs after two warm-ups, the device synchronised around each."""
    for _ in range(2):
        f()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def relative_l2(a, b):
    a, b = np.asarray(to_host(a), np.float64).ravel(), np.asarray(to_host(b), np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def test_image(size):
    dog = os.path.join(reference_dir(), "images", "dog.png")
    path = dog if os.path.exists(dog) else os.path.join(ROOT, "data", "shapes-sample.png")
    im = load_image_color(path)
    return letterbox_image(im, size, size), im.shape[2], im.shape[1], os.path.basename(path)


def network(cfg, device, weights=None, batch=None, size=None):
    sections = read_cfg(os.path.join(ROOT, "cfg", cfg))
    options = {}
    if batch:
        options.update(batch=str(batch), subdivisions="1")
    if size:
        options.update(width=str(size), height=str(size))
    sections[0].options = dict(sections[0].options, **options)
    net = Network(sections, cfg, device=device)
    if weights:
        load_weights(net, weights)
    return net


def detections(net, w, h, thresh=.25):
    dets = net.detections(w, h, thresh)
    do_nms_sort(dets, net.layers[-1].classes, .45)
    keep = dets.prob.max(axis=1) > thresh
    return dets.bbox[keep], dets.prob[keep].argmax(axis=1)


def same_detections(a, b, atol=2e-3):
    (boxes_a, classes_a), (boxes_b, classes_b) = a, b
    if len(boxes_a) != len(boxes_b):
        return False
    used = np.zeros(len(boxes_b), bool)
    for box, cls in zip(boxes_a, classes_a):
        close = ~used & (classes_b == cls) & (np.abs(boxes_b - box).max(axis=1) <= atol)
        if not close.any():
            return False
        used[np.flatnonzero(close)[0]] = True
    return True


def forward_phase(rows, log, weights_path, measured):
    xp = backend._gpu_module().xp
    gpu = backend._gpu_module()
    x, img_w, img_h, image_name = test_image(416)
    cpu_net = network("yolov3.cfg", "cpu", size=416)
    sane_random_weights(cpu_net, seed=0)
    save_weights(cpu_net, weights_path)
    cpu_net.predict(x)
    net = network("yolov3.cfg", 0, weights_path, size=416)
    net.predict(x)
    sync()
    worst = {}
    for i, layer in enumerate(net.layers):
        err = relative_l2(net.layers[i].output, cpu_net.layers[i].output)
        if err >= worst.get(layer.type, (-1, 0))[0]:
            worst[layer.type] = (err, i)
    overall = max(err for err, _ in worst.values())
    rows.append(("per-layer relative L2, GPU fp32 vs CPU (yolov3 416, " + image_name + ")",
                 ", ".join(f"{kind} {err:.1e} (layer {i})" for kind, (err, i) in sorted(worst.items())),
                 f"worst {overall:.1e} (target <= 1e-4)"))
    log(rows[-1])
    heads_fp32 = [to_host(layer.output).copy() for layer in net.layers if layer.type == "yolo"]
    del cpu_net

    batch = xp.asarray(np.repeat(x[None], 64, axis=0))
    for mode in ("fp32", "tf32"):
        gpu.set_math(mode)
        latency = timed(lambda: net.predict(x), 20)
        rows.append((f"yolov3 416 forward, batch 1, {mode}", f"{latency * 1e3:.2f} ms", f"{1 / latency:.0f} images/s"))
        log(rows[-1])
        throughput = 64 / timed(lambda: net.predict(batch), 5)
        measured[f"forward {mode}"] = throughput
        target = TARGETS[f"{mode}_forward"]
        rows.append((f"yolov3 416 forward, batch 64, {mode}", f"{throughput:.0f} images/s",
                     f"target >= {target}: {'met' if throughput >= target else 'not met'}"))
        log(rows[-1])
        if mode == "tf32":
            net.predict(x)
            heads = [layer.output for layer in net.layers if layer.type == "yolo"]
            err = max(relative_l2(h, h32) for h, h32 in zip(heads, heads_fp32))
            rows.append(("yolov3 416 yolo heads, tf32 vs fp32", f"relative L2 {err:.1e}",
                         f"target <= 3e-3: {'met' if err <= 3e-3 else 'not met'}"))
            log(rows[-1])
    gpu.set_math("fp32")


def detection_phase(rows, log):
    """Detections of trained weights (the demo's yolov3-tiny-shapes on the shapes sample): CPU, GPU fp32, tf32."""
    gpu = backend._gpu_module()
    im = load_image_color(os.path.join(ROOT, "data", "shapes-sample.png"))
    weights = os.path.join(ROOT, "weights", "yolov3-tiny-shapes.weights")
    found = {}
    for name, device, mode in (("CPU", "cpu", "fp32"), ("GPU fp32", 0, "fp32"), ("GPU tf32", 0, "tf32")):
        net = network("yolov3-tiny-shapes.cfg", device, weights)
        if device != "cpu":
            gpu.set_math(mode)
        net.predict(letterbox_image(im, net.w, net.h))
        found[name] = detections(net, im.shape[2], im.shape[1])
    gpu.set_math("fp32")
    for name in ("GPU fp32", "GPU tf32"):
        same = same_detections(found[name], found["CPU"])
        rows.append((f"detections, {name} vs CPU (yolov3-tiny-shapes, shapes sample, .25 after NMS)",
                     f"{len(found[name][0])} vs {len(found['CPU'][0])}", "same" if same else "DIFFERENT"))
        log(rows[-1])


def training_data(batch=64, size=416):
    rng = np.random.default_rng(0)
    images = rng.random((batch, 3, size, size), np.float32)
    truth = np.zeros((batch, 90 * 5), np.float32)
    for b in range(batch):
        for t in range(5):     # five boxes per image: x, y, w, h, class
            truth[b, t * 5:t * 5 + 5] = [rng.uniform(.2, .8), rng.uniform(.2, .8), rng.uniform(.05, .4),
                                         rng.uniform(.05, .4), rng.integers(80)]
    return images, truth


def training_phase(rows, log, weights_path, measured):
    net = network("yolov3-tiny.cfg", 0, batch=64, size=416)
    sane_random_weights(net, seed=1)
    save_weights(net, weights_path)
    images, truth = training_data()
    images = backend._gpu_module().xp.asarray(images)
    with contextlib.redirect_stdout(io.StringIO()):     # the yolo layers' per-batch lines
        seconds = timed(lambda: net.train_datum(images, truth), 5)
    rate = measured["train"] = 64 / seconds
    rows.append(("yolov3-tiny 416 training, batch 64, fp32", f"{rate:.0f} images/s ({seconds * 1e3:.0f} ms/step)",
                 f"target >= {TARGETS['train']}: {'met' if rate >= TARGETS['train'] else 'not met'}"))
    log(rows[-1])


def torch_phase(rows, log, yolov3_weights, tiny_weights, measured):
    """The same work in PyTorch on the same GPU: bench/torch_net.py's model of each cfg with the same weights."""
    import torch
    if not torch.cuda.is_available():
        rows.append(("PyTorch peer", "skipped", f"torch {torch.__version__} sees no GPU"))
        return
    from bench import torch_net

    def model_of(cfg, weights, batch):
        net = network(cfg, "cpu", weights, batch=batch, size=416)       # its parameters, on the host
        sections = read_cfg(os.path.join(ROOT, "cfg", cfg))
        sections[0].options = dict(sections[0].options, width="416", height="416")
        return net, torch_net.DarknetTorch(sections).load(net).cuda()

    def synchronized(f):
        def run():
            f()
            torch.cuda.synchronize()
        return run

    x, _, _, _ = test_image(416)
    _, model = model_of("yolov3.cfg", yolov3_weights, 64)
    model.eval()
    batch = torch.from_numpy(np.repeat(x[None], 64, axis=0)).cuda()
    for mode in ("fp32", "tf32"):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        with torch.no_grad():
            rate = 64 / timed(synchronized(lambda: model(batch)), 5)
        ours = measured.get(f"forward {mode}")
        rows.append((f"PyTorch {torch.__version__} yolov3 416 forward, batch 64, {mode} (cuDNN)",
                     f"{rate:.0f} images/s",
                     f"pydarknet / PyTorch = {ours / rate:.2f}" if ours else "no pydarknet figure"))
        log(rows[-1])
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    net, model = model_of("yolov3-tiny.cfg", tiny_weights, 64)
    model.train()
    optimizer = torch_net.sgd(model, net)
    images, truth = training_data()
    images = torch.from_numpy(images).cuda()

    def step():
        optimizer.zero_grad(set_to_none=True)
        surrogate, _ = torch_net.yolo_loss(model, model(images), truth)
        surrogate.backward()
        optimizer.step()
    rate = 64 / timed(synchronized(step), 5)
    ours = measured.get("train")
    rows.append((f"PyTorch {torch.__version__} yolov3-tiny 416 training, batch 64, fp32", f"{rate:.0f} images/s",
                 f"pydarknet / PyTorch = {ours / rate:.2f}" if ours else "no pydarknet figure"))
    log(rows[-1])


def section(device, rows, tests, command):
    lines = [SECTION, "", f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {device} by `{command}`.", ""]
    if tests:
        lines += [f"GPU tests (`pytest -m 'gpu or nvrtc' tests`): {tests['summary']} "
                  f"(exit {tests['rc']}, {tests['seconds']:.0f} s)", ""]
    lines += ["| measure | value | note |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the section to this file")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--budget", type=float, default=450, help="seconds after which phases are skipped")
    args = parser.parse_args()
    start = time.time()

    def log(what):
        print(f"[{time.time() - start:6.1f} s] {what}", flush=True)

    problem = backend.gpu_problem(0)
    if problem:
        print(f"gpu-check: {problem}", file=sys.stderr)
        return 1
    cupy = backend._gpu_module().xp
    device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    log(f"{device}, CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
    tests = None if args.skip_tests else run_tests(log)
    rows, measured = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        yolov3, tiny = os.path.join(tmp, "yolov3.weights"), os.path.join(tmp, "yolov3-tiny.weights")
        for name, phase in (("forward", lambda: forward_phase(rows, log, yolov3, measured)),
                            ("detection", lambda: detection_phase(rows, log)),
                            ("training", lambda: training_phase(rows, log, tiny, measured)),
                            ("PyTorch peer", lambda: torch_phase(rows, log, yolov3, tiny, measured)),
                            ("parallel", lambda: parallel_phase(rows, log))):
            if time.time() - start > args.budget:
                rows.append((f"{name} phase", "skipped", f"the {args.budget:.0f} s budget was spent"))
                continue
            try:
                phase()
            except Exception as e:  # noqa: BLE001  (report the failure in the table, go on with the next phase)
                import traceback
                traceback.print_exc()
                rows.append((f"{name} phase", "FAILED", f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"))
            log(f"memory pool after {name}: {cupy.get_default_memory_pool().total_bytes() / 2**30:.2f} GiB")
    rows.append(("device memory peak (CuPy pool)", f"{cupy.get_default_memory_pool().total_bytes() / 2**30:.2f} GiB",
                 "held by the pool after the largest step"))
    text = section(device, rows, tests, "make gpu-check")
    print("\n" + text)
    write_section(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0 if (tests is None or tests["rc"] == 0) and not any(r[1] == "FAILED" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
