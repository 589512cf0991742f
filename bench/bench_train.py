"""Benchmark: yolov3-tiny training steps, pydarknet against PyTorch CPU, side by side in one run.

One training step is Darknet's train_network_datum: forward in training mode (batch-norm on batch statistics),
the [yolo] loss, backward, and the SGD update (momentum .9, decay .0005). pydarknet runs `net.train_datum(X, truth)`;
PyTorch runs the same cfg translated by bench/torch_net.py with the same starting weights: forward in train mode,
the YOLO loss of torch_net.yolo_loss (pjreddie's forward_yolo_layer delta with torch tensors, Darknet's gradient),
backward, torch.optim.SGD with Darknet's scaling. Input: seeded random images, 2-6 random boxes per image in
Darknet's truth layout (90 x (x, y, w, h, class) per image, zero padded).

Before timing, the torch translation is checked: in eval mode its [yolo] outputs must equal pydarknet's inference
outputs (relative L2 <= 1e-4). Then each side is warmed up and the repetitions are interleaved (pydarknet batch 8,
PyTorch batch 8, pydarknet batch 1, ...) with a 0.1 s pause before each; medians. PyTorch runs in a process of its
own, as OpenCV does in bench_forward.py (see TORCH_PROCESS). Both sides use 2 threads; PyTorch flushes denormals
(torch.set_flush_denormal(True)); pydarknet flushes them in its fused bias/activation pass.

The batch-1 step is compared with the original Darknet's 1,401 ms from ../shared/darknet/timings.md: a figure from
another run on this kind of machine, so a sanity check, not a side-by-side ratio.

    python -m bench.bench_train              # prints the rows
    python -m bench.bench_train --profile    # also pydarknet's step by phase and by layer
    from bench.bench_train import run        # run(log=None) -> rows for bench/run.py
"""
import contextlib
import importlib.util
import io
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

import numpy as np


from pydarknet.cfg import read_cfg
from pydarknet.network import Network
from pydarknet.weights import load_weights, sane_random_weights, save_weights

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CFG = "yolov3-tiny"
SIZE = 416          # the cfg's own width and height
BATCH = 8
THREADS = 2
WARMUP = 2          # steps per side before timing (the first loads numba's cache and allocates)
REPEATS = 7         # timed repetitions per side
MIN_REPEATS = 3
BUDGET_S = 120      # the repetitions stop early after this, at MIN_REPEATS or more
PAUSE_S = 0.1       # before each timed step, so that the other side's idle threads have gone to sleep
CHECK_RTOL = 1e-4   # relative L2 of the torch translation's [yolo] outputs against pydarknet's, eval mode
ORIGINAL_MS = 1401  # original Darknet (pjreddie, 1 thread, -Ofast), yolov3-tiny step 416 batch 1: timings.md
TORCH_PIN = "torch==2.13.0"
LOSS = ("pjreddie's forward_yolo_layer delta written with torch tensors (objectness 0 unless IoU > ignore_thresh; box "
        "at scale 2-w*h, objectness 1 and one-hot class at each truth's cell and best anchor; no truth_thresh branch), "
        "cost |delta|^2, and -delta as the gradient of the heads' inputs, as backward_yolo_layer passes it on; SGD as "
        "update_network: lr rate/batch, momentum .9, weight decay decay*batch on the convolution weights only")
# PyTorch in a process of its own, as OpenCV in bench_forward.py. In one process no effect of either side on the
# other could be seen on the loaded 2-core machine (2 x 5 interleaved steps each way: PyTorch batch 8 2,795 and
# 2,772 ms in pydarknet's process, 2,850 and 2,681 ms in its own; pydarknet batch 1 2,462 and 2,846 ms beside it,
# 2,172 and 2,894 ms without), but separate processes rule it out: two OpenMP runtimes (numba's system libgomp,
# torch's own) and OpenBLAS's pthreads would otherwise share it. The child inherits pydarknet's thread waiting
# policies (GOMP_SPINCOUNT, a bounded spin; earlier OMP_WAIT_POLICY=PASSIVE): with ACTIVE, PyTorch took 4.3 s
# instead of 1.5-2.7 s on the loaded machine.
TORCH_PROCESS = True
SEED = 0


def torch_available():
    return importlib.util.find_spec("torch") is not None


def network(batch, seed=SEED, path=None):
    """cfg/yolov3-tiny.cfg (or the cfg at path) at the given batch (subdivisions 1), with sane random weights."""
    path = path or os.path.join(ROOT, "cfg", f"{CFG}.cfg")
    sections = read_cfg(path)
    sections[0].options.update(batch=str(batch), subdivisions="1")
    net = Network(sections, path)
    sane_random_weights(net, seed)
    return net


def truth_boxes(rng, batch, max_boxes=90, classes=80):
    """Darknet's yolo truth: batch rows of max_boxes * (x, y, w, h, class), 2-6 boxes per image, zero padded."""
    truth = np.zeros((batch, max_boxes, 5), np.float32)
    for b in range(batch):
        k = int(rng.integers(2, 7))
        truth[b, :k, 0:2] = rng.uniform(0.05, 0.95, (k, 2))
        truth[b, :k, 2:4] = rng.uniform(0.02, 0.6, (k, 2))
        truth[b, :k, 4] = rng.integers(0, classes, k)
    return truth.reshape(batch, -1)


def inputs(batch, seed=SEED, size=SIZE):
    rng = np.random.default_rng(seed)
    return rng.random((batch, 3, size, size), dtype=np.float32), truth_boxes(rng, batch)


def head_outputs(net):
    return [np.array(layer.output) for layer in net.layers if layer.type == "yolo"]


def pydarknet_step(net, x, truth):
    """One timed train_datum; Darknet's "Region ... Avg IOU" lines go to a buffer, not the terminal."""
    time.sleep(PAUSE_S)
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        cost = net.train_datum(x, truth)
        ms = (time.perf_counter() - start) * 1e3
    if not np.isfinite(cost):
        raise FloatingPointError(f"pydarknet's cost is {cost}")
    return ms


# ---- the PyTorch side --------------------------------------------------------------------------------------

class TorchSide:
    """bench/torch_net.py's model of the cfg, loaded from a .weights file that pydarknet wrote."""

    def __init__(self, cfg, weights, batch, threads):
        import torch
        from bench import torch_net
        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
        self.torch, self.torch_net = torch, torch_net
        sections = read_cfg(cfg)
        sections[0].options.update(batch=str(batch), subdivisions="1")
        self.net = Network(sections, cfg)      # only for its parameters and [net] options; runs nothing
        load_weights(self.net, weights)
        self.model = torch_net.DarknetTorch(read_cfg(cfg)).load(self.net)
        self.optimizer = torch_net.sgd(self.model, self.net)

    def check(self, x, expected):
        """Relative L2 of each [yolo] output against pydarknet's, eval mode (rolling batch-norm statistics)."""
        self.model.eval()
        with self.torch.no_grad():
            heads = self.model(self.torch.from_numpy(x))
        self.model.train()
        return [float(np.linalg.norm(h.numpy() - e) / np.linalg.norm(e)) for h, e in zip(heads, expected)]

    def step(self, x, truth):
        """One training step; (ms, Darknet's cost)."""
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        heads = self.model(self.torch.from_numpy(x))
        surrogate, cost = self.torch_net.yolo_loss(self.model, heads, truth)
        surrogate.backward()
        self.optimizer.step()
        return (time.perf_counter() - start) * 1e3, cost

    def info(self):
        return {"version": self.torch.__version__, "threads": self.torch.get_num_threads()}


def _torch_worker(conn, cfg, weights, batch, threads):
    """TorchSide in a process of its own: answers (method, args) requests until it gets None."""
    try:
        side = TorchSide(cfg, weights, batch, threads)
        conn.send(("ok", side.info()))
    except BaseException as e:  # noqa: BLE001  (the child reports any failure to the parent, then exits)
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        request = conn.recv()
        if request is None:
            break
        method, args = request
        try:
            conn.send(("ok", getattr(side, method)(*args)))
        except BaseException as e:  # noqa: BLE001  (as above: the parent decides)
            conn.send(("error", f"{type(e).__name__}: {e}"))


class TorchProcess:
    """The same methods as TorchSide, answered by a spawned process."""

    def __init__(self, cfg, weights, batch, threads):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_torch_worker, args=(child, cfg, weights, batch, threads), daemon=True)
        self.process.start()
        self._info = self._answer()

    def _answer(self):
        while not self.conn.poll(1.0):
            if not self.process.is_alive():
                raise RuntimeError(f"the PyTorch process ended (exit code {self.process.exitcode})")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"PyTorch process: {value}")
        return value

    def _call(self, method, *args):
        self.conn.send((method, args))
        return self._answer()

    def check(self, x, expected):
        return self._call("check", x, expected)

    def step(self, x, truth):
        return self._call("step", x, truth)

    def info(self):
        return self._info

    def close(self):
        self.conn.send(None)
        self.process.join(30)


# ---- the run -----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def threads(n):
    """pydarknet on n threads, as `-threads n` sets it: Numba's count, which its kernels and backend/cpu/threads.py's
    GEMM pieces use, with BLAS itself on one thread (BLAS on n as well put n x n threads on the cores: the
    training step took 2.5x as long). Numba's count is restored afterwards."""
    import numba
    from pydarknet.backend.cpu import threads as gemm_threads
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    gemm_threads.limit_blas(again=True)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def run(log=None, repeats=REPEATS, warmup=WARMUP, budget_s=BUDGET_S, torch_process=TORCH_PROCESS):
    """The training rows: dicts with work, batch, reps, ours_ms (all), ours (median), peer ..., for bench/run.py."""
    log = log or (lambda line: None)
    with threads(THREADS), tempfile.TemporaryDirectory(prefix="pydarknet-bench-") as folder:
        net8, net1 = network(BATCH), network(1)
        x8, truth8 = inputs(BATCH)
        x1, truth1 = x8[:1].copy(), truth8[:1].copy()

        theirs, check, info, why_not = None, None, None, None
        if torch_available():
            weights = os.path.join(folder, f"{CFG}.weights")
            save_weights(net8, weights)
            side = TorchProcess if torch_process else TorchSide
            theirs = side(net8.path, weights, BATCH, THREADS)
            info = theirs.info()
            net8.predict(x8)      # the translation check: eval mode, before any step changes the weights
            check = theirs.check(x8, head_outputs(net8))
            log("  torch translation check, [yolo] outputs against pydarknet's, relative L2: "
                + ", ".join(f"{c:.1e}" for c in check))
            if not max(check) <= CHECK_RTOL:
                if torch_process:
                    theirs.close()
                raise AssertionError(f"torch_net's translation of {CFG} differs from pydarknet: relative L2 {check}")
        else:
            why_not = f"skipped: pip install {TORCH_PIN} to compare"
            log(f"  PyTorch: {why_not}")

        try:
            for _ in range(warmup):
                pydarknet_step(net8, x8, truth8)
                pydarknet_step(net1, x1, truth1)
                if theirs is not None:
                    time.sleep(PAUSE_S)
                    theirs.step(x8, truth8)
            ours8, ours1, peer8, costs = [], [], [], []
            start = time.perf_counter()
            for i in range(repeats):
                ours8.append(pydarknet_step(net8, x8, truth8))
                if theirs is not None:
                    time.sleep(PAUSE_S)
                    ms, cost = theirs.step(x8, truth8)
                    peer8.append(ms)
                    costs.append((net8.cost, cost))
                ours1.append(pydarknet_step(net1, x1, truth1))
                log(f"  {CFG} train step rep {i + 1}/{repeats}: pydarknet batch {BATCH} {ours8[-1]:.0f} ms"
                    + (f", PyTorch batch {BATCH} {peer8[-1]:.0f} ms" if peer8 else "")
                    + f", pydarknet batch 1 {ours1[-1]:.0f} ms")
                if i + 1 >= MIN_REPEATS and time.perf_counter() - start > budget_s:
                    break
        finally:
            if theirs is not None and torch_process:
                theirs.close()

    common = {"name": CFG, "size": SIZE, "repeats": len(ours8), "check": check, "torch": info,
              "costs": costs, "why_not": why_not}
    batch8 = dict(common, work=f"{CFG} training step, {SIZE}x{SIZE}, batch {BATCH}", batch=BATCH, ours_ms=ours8,
                  ours=statistics.median(ours8), peer="PyTorch " + (info["version"] if info else ""),
                  peer_ms=peer8, side_by_side=True)
    batch8["peer_median"] = statistics.median(peer8) if peer8 else None
    batch1 = dict(common, work=f"{CFG} training step, {SIZE}x{SIZE}, batch 1", batch=1, ours_ms=ours1,
                  ours=statistics.median(ours1), peer="original Darknet", peer_ms=[], peer_median=ORIGINAL_MS,
                  side_by_side=False, why_not=None)
    for row in (batch8, batch1):
        row["ours_images_s"] = row["batch"] * 1e3 / row["ours"]
        row["ours_per_image"] = row["ours"] / row["batch"]
        row["peer_images_s"] = row["batch"] * 1e3 / row["peer_median"] if row["peer_median"] else None
        row["ratio"] = row["ours"] / row["peer_median"] if row["peer_median"] else None
        row["target_met"] = row["ours_per_image"] < ORIGINAL_MS
    return [batch8, batch1]


# ---- yolov3 at batch 8, and the GEMM floor -------------------------------------------------------------------

BIG_CFG = "yolov3"
BIG_REPEATS = 3
BIG_BUDGET_S = 150
GEMM_SHAPE = (1024, 4608, 2704)     # (M, K, N): yolov3's 3x3 convolution with 512 in, 1024 out at 52x52


def gemm_gflops(shape=GEMM_SHAPE, tries=3):
    """The float32 GEMM rate numpy reaches here (np.matmul, best of tries), GFLOP/s, with its BLAS on THREADS
    threads (for this measurement only: pydarknet's own GEMMs keep BLAS on one)."""
    from threadpoolctl import threadpool_limits
    m, k, n = shape
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    best = float("inf")
    with threads(THREADS), threadpool_limits(THREADS, user_api="blas"):
        np.matmul(a, b)
        for _ in range(tries):
            start = time.perf_counter()
            np.matmul(a, b)
            best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best / 1e9


def run_big(log=None, repeats=BIG_REPEATS, warmup=1, budget_s=BIG_BUDGET_S, batch=BATCH, size=SIZE,
            name=BIG_CFG):
    """yolov3 416 training step at batch 8, pydarknet against PyTorch; one row as run()'s, with the GEMM floor:
    three times the forward FLOPs over numpy's GEMM rate."""
    from bench.bench_forward import resized_cfg
    log = log or (lambda line: None)
    with threads(THREADS), tempfile.TemporaryDirectory(prefix="pydarknet-bench-") as folder:
        path = resized_cfg(name, size, folder)
        net = network(batch, path=path)
        x, truth = inputs(batch, size=size)
        theirs, check, info, why_not = None, None, None, None
        if torch_available():
            weights = os.path.join(folder, f"{name}.weights")
            save_weights(net, weights)
            theirs = TorchProcess(path, weights, batch, THREADS)
            info = theirs.info()
            net.predict(x)
            check = theirs.check(x, head_outputs(net))
            log(f"  {name} torch translation check, relative L2: " + ", ".join(f"{c:.1e}" for c in check))
            if not max(check) <= CHECK_RTOL:
                theirs.close()
                raise AssertionError(f"torch_net's translation of {name} differs from pydarknet: relative L2 {check}")
        else:
            why_not = f"skipped: pip install {TORCH_PIN} to compare"
        ours, peer, costs = [], [], []
        try:
            for _ in range(warmup):
                pydarknet_step(net, x, truth)
                if theirs is not None:
                    time.sleep(PAUSE_S)
                    theirs.step(x, truth)
            start = time.perf_counter()
            for i in range(repeats):
                ours.append(pydarknet_step(net, x, truth))
                if theirs is not None:
                    time.sleep(PAUSE_S)
                    ms, cost = theirs.step(x, truth)
                    peer.append(ms)
                    costs.append((net.cost, cost))
                log(f"  {name} train step rep {i + 1}/{repeats}: pydarknet batch {batch} {ours[-1]:,.0f} ms"
                    + (f", PyTorch {peer[-1]:,.0f} ms" if peer else ""))
                if i + 1 >= 1 and time.perf_counter() - start > budget_s:
                    break
        finally:
            if theirs is not None:
                theirs.close()
        bflops = sum(layer.bflops or 0 for layer in net.layers)
    rate = gemm_gflops()
    row = {"name": name, "size": size, "repeats": len(ours), "check": check, "torch": info, "costs": costs,
           "why_not": why_not, "work": f"{name} training step, {size}x{size}, batch {batch}", "batch": batch,
           "ours_ms": ours, "ours": statistics.median(ours), "peer": "PyTorch " + (info["version"] if info else ""),
           "peer_ms": peer, "side_by_side": True, "peer_median": statistics.median(peer) if peer else None,
           "bflops": bflops, "gemm_gflops": rate, "floor_ms": 3 * bflops * batch / rate * 1e3}
    row["ours_images_s"] = batch * 1e3 / row["ours"]
    row["ours_per_image"] = row["ours"] / batch
    row["peer_images_s"] = batch * 1e3 / row["peer_median"] if row["peer_median"] else None
    row["ratio"] = row["ours"] / row["peer_median"] if row["peer_median"] else None
    row["target_met"] = None
    return row


# ---- where pydarknet's step spends its time -------------------------------------------------------------------

def profile(batch=BATCH, steps=3, log=print):
    """pydarknet's training step by phase (forward, backward, update) and by layer, medians of `steps` steps after
    one warm-up; returns (phases, layers) as {name: ms}."""
    net = network(batch)
    x, truth = inputs(batch)
    timings = {}

    def timed(key, method):
        def wrapper(*args):
            start = time.perf_counter()
            result = method(*args)
            timings.setdefault(key, []).append((time.perf_counter() - start) * 1e3)
            return result
        return wrapper

    for i, layer in enumerate(net.layers):
        layer.forward = timed((i, "forward"), layer.forward)
        layer.backward = timed((i, "backward"), layer.backward)
        layer.update = timed((i, "update"), layer.update)
        layer.zero_delta = timed((i, "zero_delta"), layer.zero_delta)
    for name in ("forward", "backward", "update"):
        setattr(net, name, timed(("net", name), getattr(net, name)))
    with threads(THREADS), contextlib.redirect_stdout(io.StringIO()):
        net.train_datum(x, truth)
        timings.clear()
        for _ in range(steps):
            time.sleep(PAUSE_S)
            net.train_datum(x, truth)
    # per step: each key was called once per step (zero_delta too)
    per_step = {key: statistics.median(values) for key, values in timings.items()}
    phases = {name: per_step[("net", name)] for name in ("forward", "backward", "update")}
    log(f"pydarknet {CFG} training step, batch {batch}, by phase (median of {steps}): "
        + ", ".join(f"{name} {ms:,.0f} ms" for name, ms in phases.items())
        + f"; total {sum(phases.values()):,.0f} ms")
    log(f"{'layer':>5} {'type':<14} {'forward':>9} {'zero_delta':>10} {'backward':>9} {'update':>7}  ms")
    layers = {}
    for i, layer in enumerate(net.layers):
        row = [per_step.get((i, part), 0.0) for part in ("forward", "zero_delta", "backward", "update")]
        layers[i] = dict(zip(("forward", "zero_delta", "backward", "update"), row), type=layer.type)
        log(f"{i:5d} {layer.type:<14} {row[0]:9.1f} {row[1]:10.1f} {row[2]:9.1f} {row[3]:7.1f}")
    total = [sum(layers[i][part] for i in layers) for part in ("forward", "zero_delta", "backward", "update")]
    log(f"{'sum':>5} {'':<14} {total[0]:9.1f} {total[1]:10.1f} {total[2]:9.1f} {total[3]:7.1f}")
    return phases, layers


def main():
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rows = run(log=print)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for r in rows:
        if r["peer_median"] is None:
            peer = f"{r['peer']}: {r['why_not']}"
        else:
            peer = f"{r['peer']} {r['peer_median']:,.0f} ms"
            peer += "" if r["side_by_side"] else " (another run: sanity check)"
        ratio = f", ratio {r['ratio']:.2f}" if r["ratio"] else ""
        print(f"{r['work']}: pydarknet {r['ours']:,.0f} ms ({r['ours_images_s']:.1f} images/s), {peer}{ratio}")
    if "--profile" in sys.argv[1:]:
        profile()


if __name__ == "__main__":
    main()
