"""Benchmark: the network alone, pydarknet against ONNX Runtime, OpenVINO and OpenCV DNN, side by side in one run.

Each side runs in a persistent process of its own on 2 threads and gets the same cfg (only [net] width and height
set), the same .weights file (sane random weights, written by pydarknet) and the same seeded letterboxed float32
input; the runtimes run the graph `pydarknet export` writes (no -decode: the heads' outputs), OpenCV reads the cfg.
The timed unit is the network only: the array in, the heads out (pydarknet `net.predict`). Before timing, each peer's
heads are checked against pydarknet's forward (relative L2 <= 1e-4); a peer that fails is reported, not timed.

Three ways a user meets it, each side's repetitions interleaved with the others' (a round: every side once):
- "pause": batch 1 after 0.1 s idle (a camera, a request queue): the side's threads have gone to sleep;
- "back to back": batch 1, the second of two passes in a row (threads awake, caches warm);
- "batch 8": throughput, ms an image.

Peer settings (printed): ONNX Runtime intra_op_num_threads=2, inter_op_num_threads=1, ORT_ENABLE_ALL,
session.set_denormal_as_zero=1, spinning at its default; OpenVINO INFERENCE_NUM_THREADS=2, PERFORMANCE_HINT=LATENCY,
INFERENCE_PRECISION_HINT=f32 (bf16 by default on a CPU that has it), CPU_DENORMALS_OPTIMIZATION=YES; OpenCV DNN
setNumThreads(2), its own backend. pydarknet flushes denormals in its fused passes.

Then image to boxes (Detector.detect against ONNX Runtime on the -decode graph), the GEMM rate (yolov3's convolutions
inside pydarknet against numpy's OpenBLAS on the same GEMMs and a paper peak) and yolov3-tiny layer by layer.

    python -m bench.bench_peers [--quick] [yolov3-tiny ...]    # a markdown table on stdout
    from bench.bench_peers import run, table
"""
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

THREADS = 2
PAUSE_S = 0.1
TOLERANCE = 1e-4        # relative L2 of a peer's heads against pydarknet's
# (cfg, input size, the modes timed, repetitions a side): yolov3's batch 8 costs ~10 s a round on 2 cores
CASES = [
    ("yolov3-tiny", 416, ("pause", "back to back", "batch 8"), 15),
    ("yolov3", 416, ("pause", "back to back", "batch 8"), 15),
    ("yolov2", 416, ("pause",), 15),
    ("yolov2-tiny", 416, ("pause",), 15),
    ("yolov1-tiny", 448, ("pause",), 15),
]
SIDES = ("pydarknet", "ONNX Runtime", "OpenVINO", "OpenCV DNN")
BATCH = {"pause": 1, "back to back": 1, "batch 8": 8}
SETTINGS = {
    "ONNX Runtime": "intra_op_num_threads=2, inter_op_num_threads=1, ORT_ENABLE_ALL, "
                    "session.set_denormal_as_zero=1, spinning at its default",
    "OpenVINO": "INFERENCE_NUM_THREADS=2, PERFORMANCE_HINT=LATENCY, INFERENCE_PRECISION_HINT=f32, "
                "CPU_DENORMALS_OPTIMIZATION=YES",
    "OpenCV DNN": "setNumThreads(2), DNN_BACKEND_OPENCV on the CPU",
    "pydarknet": "2 threads (numba and the GEMMs), net.predict",
}


# ---- each side: a loaded network with forward(x, want=None) -> list of head arrays -----------------------------
# `want`: None (the timed outputs), "heads" or "head inputs" (what the check compares)

def pydarknet_threads():
    """pydarknet on THREADS threads in this process, as `-threads` sets it (Numba's and the GEMM pieces')."""
    import numba
    from pydarknet.backend.cpu import threads
    numba.set_num_threads(THREADS)
    threads.limit_blas(again=True)


def ort_options(profile_prefix=None):
    """ONNX Runtime's session options as SETTINGS says (with its profiler on where a prefix is given)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return options


def error_line(e):
    """An exception as a row's note: its message's last line."""
    return (str(e).strip().splitlines() or [type(e).__name__])[-1]


def pydarknet_side(case):
    import numba
    from pydarknet.export import heads
    from pydarknet.network import load_network
    pydarknet_threads()
    net = load_network(case["cfg"], case["weights"])
    outputs = heads(net)

    def forward(x, want=None):     # inference follows the input's batch
        net.predict(x)
        shift = 1 if want == "head inputs" else 0
        return [np.array(net.layers[i - shift].output).reshape(x.shape[0], -1) for i in outputs]
    return forward, f"pydarknet (numba {numba.__version__})"


def onnxruntime_side(case):
    import onnxruntime as ort
    options = ort_options()
    sessions = {}

    def forward(x, want=None):
        batch = x.shape[0]
        if batch not in sessions:
            sessions[batch] = ort.InferenceSession(case["onnx"][batch], options, providers=["CPUExecutionProvider"])
        session = sessions[batch]
        outputs = session.run(None, {session.get_inputs()[0].name: x})
        return [o.reshape(batch, -1) for o in outputs]
    return forward, f"ONNX Runtime {ort.__version__}"


def openvino_side(case):
    import openvino as ov
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
              "CPU_DENORMALS_OPTIMIZATION": "YES"}
    compiled = {}

    def forward(x, want=None):
        batch = x.shape[0]
        if batch not in compiled:
            model = core.read_model(case["onnx"][batch])
            compiled[batch] = core.compile_model(model, "CPU", config).create_infer_request()
        request = compiled[batch]
        request.infer({0: x})
        return [np.array(request.get_output_tensor(k).data).reshape(batch, -1)
                for k in range(len(request.model_outputs))]
    return forward, f"OpenVINO {ov.__version__}"


def opencv_side(case):
    """OpenCV's outputs at the heads are decoded boxes, not Darknet's buffers: its check compares the inputs of the
    heads (conv_N before each [yolo]/[region]) on a net of its own (one asked for other outputs answers wrongly
    afterwards: tests/test_opencv_crosscheck.py)."""
    import cv2
    from bench.bench_forward import opencv_net
    cv2.setNumThreads(THREADS)
    net, checked = opencv_net(case["cfg"], case["weights"]), opencv_net(case["cfg"], case["weights"])
    names = list(net.getUnconnectedOutLayersNames())

    def forward(x, want=None):
        used = checked if want else net
        used.setInput(x)
        return [np.asarray(o).reshape(x.shape[0], -1) for o in used.forward(case["head_inputs"] if want else names)]
    return forward, f"OpenCV DNN {cv2.__version__}"


MAKERS = {"pydarknet": pydarknet_side, "ONNX Runtime": onnxruntime_side, "OpenVINO": openvino_side,
          "OpenCV DNN": opencv_side}


def _worker(conn, side, case):
    """A side in its own process: answers ("heads", batch) with its heads' outputs, ("time", mode) with the
    milliseconds of one timed pass in that mode, None by ending. Its first answer: its name, or its error line."""
    if side == "pydarknet":
        import pydarknet  # noqa: F401  (first: its thread-pool waiting policies are set before numpy loads)
    try:
        forward, name = MAKERS[side](case)
        inputs = {b: case["input"][:b] for b in (1, 8)}
        forward(inputs[1])      # the first pass: compile, load caches
    except ImportError as e:
        conn.send(("error", f"not installed ({e}): pip install \"pydarknet[bench]\""))
        return
    except Exception as e:      # noqa: BLE001  whatever a runtime raises, its last line is the row's note
        conn.send(("error", error_line(e)))
        return
    conn.send(("ok", name))
    while True:
        request = conn.recv()
        if request is None:
            return
        kind, value = request
        try:
            if kind in ("heads", "head inputs"):
                conn.send(forward(inputs[value], want=kind))
                continue
            x = inputs[BATCH[value]]
            if value == "back to back":
                forward(x)
            else:
                time.sleep(PAUSE_S)
            start = time.perf_counter()
            forward(x)
            conn.send((time.perf_counter() - start) * 1e3 / x.shape[0])
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            conn.send(f"{type(e).__name__}: {e}")


class Side:
    """A side's process (`target`: _worker, or _end_to_end_worker) and its pipe."""

    def __init__(self, side, case, target=None):
        ctx = multiprocessing.get_context("spawn")
        self.name, self.conn = side, None
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target or _worker, args=(child, side, case), daemon=True)
        self.process.start()
        status, self.label = self.conn.recv()
        self.error = self.label if status == "error" else None

    def ask(self, kind, value):
        self.conn.send((kind, value))
        answer = self.conn.recv()
        if isinstance(answer, str):
            raise RuntimeError(f"{self.name}: {answer}")
        return answer

    def close(self):
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


# ---- image -> boxes: pydarknet's Detector against ONNX Runtime on the -decode graph, as a user writes it -------

THRESH, NMS = .5, .45
END_TO_END = ("yolov3-tiny-shapes", 416, 15)     # weights/yolov3-tiny-shapes.weights, data/shapes-sample.png


def pydarknet_detector(case):
    from pydarknet.detector.pipeline import Detector
    detector = Detector(case["cfg"], case["weights"], names=[str(k) for k in range(80)], thresh=THRESH, nms=NMS)

    def detect(image):
        return len(detector.detect(image))
    return detect


def onnxruntime_detector(case):
    """Letterbox with cv2 (grey padding), the -decode graph, scores above THRESH, the boxes back in pixels,
    cv2.dnn.NMSBoxesBatched (per class)."""
    import cv2
    import onnxruntime as ort
    session = ort.InferenceSession(case["decoded"], ort_options(), providers=["CPUExecutionProvider"])
    size = case["size"]

    def detect(image):
        h, w = image.shape[:2]
        scale = min(size / w, size / h)
        nw, nh = int(w * scale), int(h * scale)
        dx, dy = (size - nw) // 2, (size - nh) // 2
        canvas = np.full((size, size, 3), 127, np.uint8)
        canvas[dy:dy + nh, dx:dx + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = cv2.dnn.blobFromImage(canvas, 1 / 255, swapRB=True)
        boxes, _, scores = session.run(["boxes", "objectness", "scores"], {"input": blob})
        rows, classes = np.nonzero(scores[0] > THRESH)
        if not len(rows):
            return 0
        b = boxes[0][rows]
        x, y = (b[:, 0] * size - dx) / scale, (b[:, 1] * size - dy) / scale
        bw, bh = b[:, 2] * size / scale, b[:, 3] * size / scale
        rects = np.stack([x - bw / 2, y - bh / 2, bw, bh], 1).tolist()
        kept = cv2.dnn.NMSBoxesBatched(rects, scores[0][rows, classes].tolist(), classes.tolist(), THRESH, NMS)
        return len(kept)
    return detect


def _end_to_end_worker(conn, side, case):
    """A side of the end-to-end row: answers "time" with (ms, boxes found) of one detect after PAUSE_S."""
    if side == "pydarknet":
        import pydarknet  # noqa: F401
        pydarknet_threads()
    import cv2
    cv2.setNumThreads(THREADS)
    try:
        detect = (pydarknet_detector if side == "pydarknet" else onnxruntime_detector)(case)
        image = cv2.imread(case["image"])
        detect(image)
    except Exception as e:      # noqa: BLE001
        conn.send(("error", error_line(e)))
        return
    conn.send(("ok", side))
    while conn.recv() is not None:
        time.sleep(PAUSE_S)
        start = time.perf_counter()
        found = detect(image)
        conn.send(((time.perf_counter() - start) * 1e3, found))


def run_end_to_end(folder, quick=False, log=print):
    """pydarknet Detector.detect against ONNX Runtime + cv2 on one image after a pause each, on the shapes network
    with its trained weights (so that there are boxes to decode and suppress): a dict of times and box counts."""
    from bench.bench_forward import resized_cfg
    from pydarknet.export import build_model
    from pydarknet.network import load_network
    name, size, repeats = END_TO_END
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    case = {"cfg": resized_cfg(name, size, folder), "weights": os.path.join(repo, "weights", f"{name}.weights"),
            "decoded": os.path.join(folder, f"{name}-{size}-decoded.onnx"), "size": size,
            "image": os.path.join(repo, "data", "shapes-sample.png")}
    with open(case["decoded"], "wb") as f:
        f.write(build_model(load_network(case["cfg"], case["weights"]), decode=True).SerializeToString())
    sides = [Side(side, case, _end_to_end_worker) for side in ("pydarknet", "ONNX Runtime")]
    result = {"name": name, "size": size, "image": case["image"], "ms": {}, "boxes": {}, "errors": {}}
    try:
        timed = [side for side in sides if not side.error]
        result["errors"] = {side.name: side.error for side in sides if side.error}
        for rep in range(1 if quick else repeats):
            for side in timed:
                side.conn.send(True)
                ms, found = side.conn.recv()
                result["ms"].setdefault(side.name, []).append(ms)
                result["boxes"][side.name] = found
            log(f"  end to end {rep + 1}: " + ", ".join(f"{n} {t[-1]:.1f}" for n, t in result["ms"].items()))
    finally:
        for side in sides:
            side.close()
    return result


def end_to_end_lines(result):
    """The end-to-end row under the table."""
    ms = result["ms"]
    if "pydarknet" not in ms or "ONNX Runtime" not in ms:
        return [f"Image to boxes: not timed ({'; '.join(f'{k}: {v}' for k, v in result['errors'].items())})"]
    ours, theirs = statistics.median(ms["pydarknet"]), statistics.median(ms["ONNX Runtime"])
    return [f"Image to boxes ({result['name']} {result['size']} with its trained weights, "
            f"`{os.path.basename(result['image'])}`, thresh "
            f"{THRESH}, NMS {NMS}, after a 0.1 s pause, {len(ms['pydarknet'])} reps): pydarknet `Detector.detect` "
            f"{cell(ms['pydarknet'])} ms, {result['boxes']['pydarknet']} boxes; ONNX Runtime on the `-decode` graph "
            f"with cv2 letterbox and `cv2.dnn.NMSBoxesBatched` {cell(ms['ONNX Runtime'])} ms, "
            f"{result['boxes']['ONNX Runtime']} boxes; ratio {ours / theirs:.2f}."]


# ---- the gap, layer by layer: pydarknet's per-layer times beside ONNX Runtime's per-node profile ----------------

PROFILE = ("yolov3-tiny", 416, 10)


def _instrumented(case):
    """The case's network in this process with each layer's forward timed into `timings` (empty after a first,
    untimed pass), and its batch-1 input: (net, timings, x)."""
    import pydarknet  # noqa: F401
    from bench.bench_profile import instrument
    from pydarknet.network import load_network
    pydarknet_threads()
    net = load_network(case["cfg"], case["weights"])
    timings = {}
    instrument(net, timings)
    x = case["input"][:1]
    net.predict(x)
    timings.clear()
    return net, timings, x


def _profile_pydarknet(case, steps):
    """pydarknet's median ms per layer (its forward wrapped with a timer) and of the whole pass, batch 1 after a
    pause each."""
    from bench.bench_profile import kind
    net, timings, x = _instrumented(case)
    whole = []
    for _ in range(steps):
        time.sleep(PAUSE_S)
        start = time.perf_counter()
        net.predict(x)
        whole.append((time.perf_counter() - start) * 1e3)
    layers = {i: statistics.median(v) for (i, method), v in timings.items() if method == "forward"}
    types = [kind(layer) for layer in net.layers]
    for i in net.fused_pools():
        types[i], types[i + 1] = f"{types[i]} + maxpool", "maxpool (in the layer before)"
    return {"whole": statistics.median(whole), "layers": layers, "types": types}


def _profile_onnxruntime(case, steps):
    """ONNX Runtime's median ms per layer (its profile's node events, by the `L<index>.` of their names; fused
    nodes count for the layer of their first node) and of the whole run, batch 1 after a pause each."""
    import json
    import re
    import onnxruntime as ort
    options = ort_options(profile_prefix=os.path.join(os.path.dirname(case["cfg"]), "ort-profile"))
    session = ort.InferenceSession(case["onnx"][1], options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: case["input"][:1]}
    session.run(None, feed)
    whole = []
    for _ in range(steps):
        time.sleep(PAUSE_S)
        start = time.perf_counter()
        session.run(None, feed)
        whole.append((time.perf_counter() - start) * 1e3)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    import onnx
    produced_by = {out: int(node.name[1:].split(".")[0]) for node in onnx.load(case["onnx"][1]).graph.node
                   if node.name.startswith("L") for out in node.output}

    def layer_of(name):
        """The layer of an event's node: `L<i>.` of an original node's name; ORT's NCHWc nodes are named after
        the output they make (`leakyrelu.14_nchwc`); its layout reorders belong to no layer ("other")."""
        base = name[:-len("_kernel_time")]
        match = re.match(r"L(\d+)\.", base)
        if match:
            return int(match.group(1))
        return produced_by.get(re.sub(r"_nchwc$", "", base), "other")

    per_run = {}
    runs = [e for e in events if e.get("name") == "model_run"]
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        run = sum(r["ts"] <= event["ts"] for r in runs) - 1         # which model_run it falls in
        if run >= 1:                                                 # the first run is the warm-up
            key = (layer_of(event["name"]), run)
            per_run[key] = per_run.get(key, 0.0) + event["dur"] / 1e3
    layers = {}
    for (i, run), ms in per_run.items():
        layers.setdefault(i, []).append(ms)
    layers = {i: statistics.median(v) for i, v in layers.items()}
    return {"whole": statistics.median(whole), "other": layers.pop("other", 0.0), "layers": layers}


def _call(conn, function, args):
    try:
        conn.send(function(*args))
    except Exception as e:      # noqa: BLE001
        traceback.print_exc()
        conn.send(f"{type(e).__name__}: {e}")


# ---- the GEMM rate: pydarknet's convolutions against OpenBLAS on the same GEMMs and a paper peak ----------------

GEMM_CASE = ("yolov3", 416, 5)


def paper_peak():
    """(GFLOP/s, the assumptions as text): cores x FMA pipes x float32 lanes x 2 x clock. The clock is the
    time-stamp counter's rate (the nominal clock; boost runs above it), the cores os.cpu_count() (vCPUs here)."""
    from pydarknet.backend.cpu import threads
    flags = open("/proc/cpuinfo").read()
    amd = "AuthenticAMD" in flags
    if "avx512f" in flags and not amd:
        pipes, lanes, what = 2, 16, "AVX-512 on two 512-bit FMA pipes (Intel Xeon)"
    elif "avx512f" in flags:
        pipes, lanes, what = 2, 8, "AVX-512 on two 256-bit FMA pipes (Zen 4)"
    else:
        pipes, lanes, what = 2, 8, "AVX2: two 256-bit FMA pipes"
    cores, ghz = os.cpu_count() or 1, threads._cycles_per_us() / 1e3
    peak = cores * pipes * lanes * 2 * ghz
    return peak, (f"{cores} cores x {pipes} FMA pipes x {lanes} lanes x 2 x {ghz:.2f} GHz (the time-stamp "
                  f"counter's rate) = {peak:.0f} GFLOP/s; {what}")


def _gemm_rates(case, steps):
    """Every convolution of the case's forward (batch 1, back to back) timed inside pydarknet, then each one's
    im2col GEMM (K x C*k*k times C*k*k x H'*W') by numpy's OpenBLAS on THREADS threads in this process."""
    from threadpoolctl import threadpool_limits
    net, timings, x = _instrumented(case)
    for _ in range(steps):
        net.predict(x)
    convolutions = [i for i, layer in enumerate(net.layers) if layer.type == "convolutional"]
    ours_ms = sum(statistics.median(timings[(i, "forward")]) for i in convolutions)
    gflop = sum(net.layers[i].bflops for i in convolutions)
    rng = np.random.default_rng(0)
    blas_ms = 0.0
    with threadpool_limits(THREADS, "blas"):
        for i in convolutions:
            layer = net.layers[i]
            rows = layer.in_shape[0] // layer.groups * layer.size * layer.size
            a = rng.random((layer.filters, rows), dtype=np.float32)
            b = rng.random((rows, layer.out_shape[1] * layer.out_shape[2]), dtype=np.float32)
            out = a @ b
            times = []
            for _ in range(3):
                start = time.perf_counter()
                np.matmul(a, b, out=out)
                times.append((time.perf_counter() - start) * 1e3)
            blas_ms += min(times)
    return {"gflop": gflop, "ours_ms": ours_ms, "blas_ms": blas_ms, "layers": len(convolutions)}


def run_gemm_rate(folder, quick=False, log=print):
    name, size, steps = GEMM_CASE
    log("-- peers: the GEMM rate")
    result = in_process(_gemm_rates, prepare(name, size, folder), 1 if quick else steps)
    return {"name": name, "size": size, "result": result, "peak": paper_peak()}


def gemm_rate_lines(rate):
    result, (peak, assumptions) = rate["result"], rate["peak"]
    if isinstance(result, str):
        return [f"GEMM rate: not measured ({result})"]
    ours, blas = result["gflop"] / result["ours_ms"], result["gflop"] / result["blas_ms"]     # GFLOP per ms = TFLOP/s
    return [f"GEMM rate ({rate['name']} {rate['size']}, batch 1 back to back, its {result['layers']} convolutions, "
            f"{result['gflop']:.1f} GFLOP counted as direct convolutions (Winograd does fewer): pydarknet "
            f"{ours * 1e3:.0f} GFLOP/s ({result['ours_ms']:.0f} ms inside the convolutions, batch-norm and activation "
            f"included); numpy's OpenBLAS sgemm on the same im2col GEMMs, {THREADS} threads, best of 3: "
            f"{blas * 1e3:.0f} GFLOP/s ({result['blas_ms']:.0f} ms, the column matrices not counted); pydarknet / "
            f"OpenBLAS {ours / blas:.2f}. Paper peak: {assumptions}; pydarknet at {ours * 1e3 / peak:.0%} of it, "
            f"OpenBLAS at {blas * 1e3 / peak:.0%} (Winograd's layers do fewer FLOPs than counted here, and the "
            f"cores may run above the counter's rate)."]


def in_process(function, *args):
    """function(*args) in a spawned process of its own: its result, or its error line."""
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    process = ctx.Process(target=_call, args=(child, function, args), daemon=True)
    process.start()
    result = conn.recv()
    process.join(30)
    return result


def run_layer_profile(folder, quick=False, log=print):
    """pydarknet's and ONNX Runtime's time per layer of yolov3-tiny 416 at batch 1 (each in a process of its
    own, one after the other): {"ours", "theirs"}, each a dict or an error line."""
    name, size, steps = PROFILE
    case = prepare(name, size, folder)
    steps = 2 if quick else steps
    log("-- peers: layer by layer")
    return {"name": name, "size": size, "steps": steps, "ours": in_process(_profile_pydarknet, case, steps),
            "theirs": in_process(_profile_onnxruntime, case, steps)}


def layer_profile_lines(profile):
    """The layer-by-layer table: each layer's ms on both sides, then the whole pass and what lies outside the
    layers."""
    ours, theirs = profile["ours"], profile["theirs"]
    if isinstance(ours, str) or isinstance(theirs, str):
        return [f"Layer by layer: not measured (pydarknet: {ours if isinstance(ours, str) else 'ok'}; ONNX Runtime: "
                f"{theirs if isinstance(theirs, str) else 'ok'})"]
    lines = [f"Layer by layer ({profile['name']} {profile['size']}, batch 1 after a 0.1 s pause, medians of "
             f"{profile['steps']} passes; pydarknet: each layer's forward timed; ONNX Runtime: its profile's node "
             f"times by the layer their node came from, a fused node counted for its first):", "",
             "| layer | type | pydarknet ms | ONNX Runtime ms | difference ms |", "|---:|---|---:|---:|---:|"]
    for i, kind in enumerate(ours["types"]):
        a, b = ours["layers"].get(i, 0.0), theirs["layers"].get(i, 0.0)
        lines.append(f"| {i} | {kind} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
    lines.append(f"| - | ONNX Runtime's layout reorders (NCHWc) | - | {theirs['other']:.2f} | |")
    inside_ours, inside_theirs = sum(ours["layers"].values()), sum(theirs["layers"].values()) + theirs["other"]
    lines.append(f"| all | inside the layers | {inside_ours:.1f} | {inside_theirs:.1f} | "
                 f"{inside_ours - inside_theirs:+.1f} |")
    lines.append(f"| all | whole pass (outside the layers: {ours['whole'] - inside_ours:.1f} / "
                 f"{theirs['whole'] - inside_theirs:.1f}) | {ours['whole']:.1f} | {theirs['whole']:.1f} | "
                 f"{ours['whole'] - theirs['whole']:+.1f} |")
    return lines


def relative_l2(ours, theirs):
    a = np.concatenate([o.ravel() for o in ours]).astype(np.float64)
    b = np.concatenate([t.ravel() for t in theirs]).astype(np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def prepare(name, size, folder, seed=0):
    """The case's files: the resized cfg, sane random weights, the exported graphs at batch 1 and 8, the input."""
    from bench.bench_forward import bench_weights, resized_cfg
    from pydarknet.cfg import read_cfg
    from pydarknet.export import build_model, heads
    from pydarknet.network import Network
    from pydarknet.weights import save_weights
    cfg = resized_cfg(name, size, folder)
    net = Network(read_cfg(cfg), cfg)
    bench_weights(net, seed)
    weights = os.path.join(folder, f"{name}-{size}.weights")
    save_weights(net, weights)
    onnx = {}
    for batch in (1, 8):
        onnx[batch] = os.path.join(folder, f"{name}-{size}-b{batch}.onnx")
        with open(onnx[batch], "wb") as f:
            f.write(build_model(net, batch=batch).SerializeToString())
    x = np.random.default_rng(seed).random((8, 3, size, size), dtype=np.float32)   # a letterboxed image's range
    head_inputs = [f"conv_{i - 1}" for i in heads(net) if net.layers[i].type in ("yolo", "region")]
    return {"cfg": cfg, "weights": weights, "onnx": onnx, "input": x, "head_inputs": head_inputs}


def run_case(name, size, modes, repeats, folder, log=print):
    """One network: every side started, checked, then timed round by round; a dict of the results."""
    case = prepare(name, size, folder)
    sides = [Side(side, case) for side in SIDES]
    result = {"name": name, "size": size, "modes": modes, "labels": {}, "errors": {}, "l2": {}, "ms": {}}
    try:
        ours = sides[0]
        if ours.error:
            raise RuntimeError(f"pydarknet: {ours.error}")
        batches = {BATCH[m] for m in modes}
        reference = {b: ours.ask("heads", b) for b in batches}
        head_inputs = {b: ours.ask("head inputs", b) for b in batches}
        timed = [ours]
        for side in sides:
            result["labels"][side.name] = side.label if not side.error else side.name
            if side is ours:
                continue
            if side.error:
                result["errors"][side.name] = side.error
                continue
            try:
                wanted = head_inputs if side.name == "OpenCV DNN" else reference
                l2 = max(relative_l2(wanted[b], side.ask("heads", b)) for b in wanted)
            except RuntimeError as e:
                result["errors"][side.name] = str(e)
                continue
            result["l2"][side.name] = l2
            if l2 <= TOLERANCE:
                timed.append(side)
            else:
                result["errors"][side.name] = f"its heads differ from pydarknet's (relative L2 {l2:.1e}): not timed"
        for mode in modes:
            times = {side.name: [] for side in timed}
            for rep in range(repeats):
                for side in timed:
                    times[side.name].append(side.ask("time", mode))
                log(f"  {name} {mode} {rep + 1}/{repeats}: " +
                    ", ".join(f"{n} {t[-1]:.1f}" for n, t in times.items()))
            result["ms"][mode] = times
    finally:
        for side in sides:
            side.close()
    return result


def run(cases=CASES, quick=False, log=print):
    """Every case (quick: 1 repetition each) in one temporary folder, then the end-to-end row, the GEMM rate and
    the layer-by-layer profile: (the cases' results, the end-to-end result, the profile, the GEMM rate)."""
    with tempfile.TemporaryDirectory(prefix="pydarknet-peers-") as folder:
        results = []
        for name, size, modes, repeats in cases:
            log(f"-- peers: {name} {size}")
            results.append(run_case(name, size, modes, 1 if quick else repeats, folder, log))
        log("-- peers: image to boxes")
        end_to_end = run_end_to_end(folder, quick, log)
        gemm_rate = run_gemm_rate(folder, quick, log)
        return results, end_to_end, run_layer_profile(folder, quick, log), gemm_rate


def cell(times):
    """`median (min-max)` in ms."""
    return f"{statistics.median(times):.1f} ({min(times):.1f}-{max(times):.1f})"


def table(results):
    """The markdown table: a row a network and mode; each side's median (range) in ms, and pydarknet's ratios."""
    peers = SIDES[1:]
    lines = ["| network | mode | reps | " + " | ".join(f"{s} ms" for s in SIDES) + " | "
             + " | ".join(f"pydarknet / {s}" for s in peers) + " |",
             "|---|---|---:|" + "---:|" * (len(SIDES) + len(peers))]
    for r in results:
        for mode in r["modes"]:
            times = r["ms"].get(mode, {})
            ours = times.get("pydarknet")
            if not ours:
                continue
            cells = [cell(times[s]) if s in times else "-" for s in SIDES]
            ratios = [f"{ratio(r, mode, s):.2f}" if s in times else "-" for s in peers]
            unit = " (ms an image)" if BATCH[mode] > 1 else ""
            lines.append(f"| {r['name']} {r['size']} | {mode}{unit} | {len(ours)} | " + " | ".join(cells) + " | "
                         + " | ".join(ratios) + " |")
    notes = []
    for r in results:
        for side, error in r["errors"].items():
            notes.append(f"- {r['name']}: {side}: {error}")
        checked = ", ".join(f"{s} {v:.1e}" for s, v in r["l2"].items())
        if checked:
            notes.append(f"- {r['name']}: heads against pydarknet's, relative L2: {checked}")
    labels = {}
    for r in results:
        labels.update({side: label for side, label in r["labels"].items() if side not in r["errors"]})
    settings = [f"- {labels.get(s, s)}: {SETTINGS[s]}" for s in SIDES]
    return lines + [""] + settings + notes


# issue 28's targets: (network, mode, peer, at most this ratio of pydarknet's median to the peer's; goal)
TARGETS = [(name, mode, peer, limit, goal)
           for name in ("yolov3-tiny", "yolov3")
           for mode, peer, limit, goal in [("pause", "ONNX Runtime", 1.0, 0.8), ("pause", "OpenVINO", 1.0, 0.8),
                                           ("pause", "OpenCV DNN", 0.9, None),
                                           ("back to back", "ONNX Runtime", 1.0, None),
                                           ("back to back", "OpenVINO", 1.0, None),
                                           ("batch 8", "ONNX Runtime", 1.0, None), ("batch 8", "OpenVINO", 1.0, None)]]
SELF_PAUSE = 1.15       # pydarknet's batch 1 after a pause against its own back to back


def ratio(result, mode, side):
    """pydarknet's median over `side`'s in `mode`, None where either was not timed."""
    times = result["ms"].get(mode, {})
    if not times.get("pydarknet") or not times.get(side):
        return None
    return statistics.median(times["pydarknet"]) / statistics.median(times[side])


def target_lines(results):
    """One line a target of issue 28: met or not, with the ratio."""
    by_name = {r["name"]: r for r in results}
    lines = []
    for name, mode, peer, limit, goal in TARGETS:
        if name not in by_name:
            continue
        value = ratio(by_name[name], mode, peer)
        if value is None:
            lines.append(f"- {name} {mode}: <= {limit}x {peer}: not timed")
            continue
        met = "met" if value <= limit else "NOT met"
        lines.append(f"- {name} {mode}: <= {limit}x {peer}{f' (goal {goal}x)' if goal else ''}: {value:.2f}, {met}"
                     + (", goal met" if goal and value <= goal else ""))
    for name in ("yolov3-tiny", "yolov3"):
        times = by_name[name]["ms"] if name in by_name else {}
        if "pause" in times and "back to back" in times:
            value = (statistics.median(times["pause"]["pydarknet"])
                     / statistics.median(times["back to back"]["pydarknet"]))
            lines.append(f"- {name}: pydarknet after a pause <= {SELF_PAUSE}x its own back to back: {value:.2f}, "
                         f"{'met' if value <= SELF_PAUSE else 'NOT met'}")
    return lines


def main():
    names = [a for a in sys.argv[1:] if not a.startswith("-")]
    cases = [c for c in CASES if not names or c[0] in names]
    results, end_to_end, profile, gemm_rate = run(cases, quick="--quick" in sys.argv)
    print("\n".join(table(results) + [""] + target_lines(results) + [""] + end_to_end_lines(end_to_end) + [""]
                    + layer_profile_lines(profile) + [""] + gemm_rate_lines(gemm_rate)))


if __name__ == "__main__":
    main()
