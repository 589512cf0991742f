"""`make bench`: pydarknet's CPU benchmarks, side by side with ONNX Runtime, OpenVINO and OpenCV DNN (forward passes,
bench/bench_peers.py and bench/bench_forward.py) and PyTorch (training steps, bench/bench_train.py) in one run,
written to bench/RESULTS.md.

    python -m bench.run            # from the repository root; about 22 minutes on the 2-core machine
    python -m bench.run --quick    # (or BENCH_QUICK=1) a smoke run: 1-2 reps, small cases; do not commit its RESULTS.md

Rewrites the "## CPU" section of bench/RESULTS.md and keeps every other "## " section (a "## GPU" section written
by another tool, say) and the text before the first heading as they are.
"""
import datetime
import os
import platform
import re
import sys
import traceback


import pydarknet  # noqa: F401  (first: it sets the thread-pool waiting policies before numpy loads OpenBLAS)
from bench import bench_forward, bench_peers
from bench.results import RESULTS, write_section
from pydarknet.trainer import cpu_model     # the Seed line names the same CPU

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SECTION = "## CPU"
TARGET = 0.9        # forward: pydarknet at most 0.9x OpenCV DNN's time on the quiet machine
TARGET_BUSY = 1.2   # ... and 1.2x with one core taken by a spinning process
GOAL = 0.67         # both: ahead of OpenCV by a third
TARGET_PROCESS = 1.5    # whole detect process, cold start (goal 1.0x)
TARGET_MEMORY = 1.2     # peak resident memory of yolov3 416 detect
TARGET_TRAIN, GOAL_TRAIN = 1.0, 0.7     # training step at 416 batch 8 against PyTorch, yolov3-tiny and yolov3


def quick():
    """--quick or BENCH_QUICK=1: a smoke run with 1-2 repetitions and small cases."""
    return "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK", "") not in ("", "0")


def guarded(what, function, *args, **kwargs):
    """(function's value, None), or (None, "failed: ...") with the traceback printed: one part failing does not end
    the bench."""
    print(f"-- {what}", flush=True)
    try:
        return function(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001  (a failed bench is a row that says why; the others still run)
        traceback.print_exc()
        return None, f"failed: {type(e).__name__}: {e}"


def log(line):
    print(line, flush=True)


# ---- the machine -----------------------------------------------------------------------------------------------

def load_average():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def machine_lines():
    import cv2
    import numba
    import numpy
    lines = [f"- CPU: {cpu_model()}, {os.cpu_count()} cores ({platform.machine()}, {platform.system()})",
             f"- Python {platform.python_version()}, numpy {numpy.__version__}, numba {numba.__version__} "
             f"({numba.get_num_threads()} threads, threading layer {threading_layer()}), "
             f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)"]
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return lines + ["- BLAS: threadpoolctl not installed"]
    for pool in threadpool_info():     # numpy's BLAS does pydarknet's GEMM; OpenCV DNN has its own conv kernels
        path = pool.get("filepath") or ""
        match = re.search(r"site-packages/([A-Za-z0-9_]+?)(?:\.libs)?/", path)
        owner = {"opencv_python_headless": "OpenCV"}.get(match.group(1), match.group(1)) if match else "system"
        if pool.get("internal_api") == "openmp" and threading_layer() == "omp":
            owner += ", numba's omp threading layer"
        details = [f"{pool.get('internal_api')} {pool.get('version') or ''}".strip()]
        if pool.get("architecture"):
            details.append(f"{pool['architecture']} kernels")
        details.append(f"{pool.get('num_threads')} threads" + (f" ({pool['threading_layer']})"
                                                                if pool.get("threading_layer") else ""))
        lines.append(f"- {pool.get('user_api', '?').upper()} of {owner} ({os.path.basename(path)}): "
                     + ", ".join(details))
    return lines


ENVIRONMENT = ("NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
               "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OPENCV_FOR_THREADS_NUM")


def environment_line():
    found = [f"`{key}={os.environ[key]}`" for key in ENVIRONMENT if key in os.environ]
    return ("- Threading settings in the environment (pydarknet sets the two waiting policies at import; OpenCV's "
            "process inherits them): " + (", ".join(found) if found else "none (the defaults)"))


def threading_layer():
    import numba
    try:
        return numba.threading_layer()
    except ValueError:          # no parallel kernel has run yet
        return "not yet chosen"


# ---- the work --------------------------------------------------------------------------------------------------

def run_nms():
    """(seconds, None) from bench.bench_nms.run(), or (None, why not)."""
    try:
        from bench import bench_nms
    except ImportError as e:
        if getattr(e, "name", None) not in ("bench.bench_nms", "bench_nms"):
            raise
        return None, "skipped: bench/bench_nms.py is not there yet"
    try:
        return bench_nms.run(), None
    except Exception as e:  # noqa: BLE001  (the forward table is still worth writing)
        traceback.print_exc()
        return None, f"failed: {type(e).__name__}: {e}"


def run_train():
    """(rows, None) from bench.bench_train.run(), or (None, why not); torch missing is a row note, not a failure."""
    try:
        from bench import bench_train
    except ImportError as e:
        if getattr(e, "name", None) not in ("bench.bench_train", "bench_train"):
            raise
        return None, "skipped: bench/bench_train.py is not there yet"
    try:
        return bench_train.run(log=lambda line: print(line, flush=True)), None
    except Exception as e:  # noqa: BLE001  (the forward table is still worth writing)
        traceback.print_exc()
        return None, f"failed: {type(e).__name__}: {e}"


def train_lines(train, big=(None, "not run")):
    """The training table and its notes, under the forward table."""
    rows, note = train
    big_line, big_note = big_lines(big)
    if rows is None:
        return [f"Training steps: {note}.", "", big_note]
    from bench.bench_train import LOSS, ORIGINAL_MS, TORCH_PIN
    r8, r1 = rows
    out = [f"Training steps: Darknet's `train_network_datum` (forward in training mode with batch-norm batch "
           f"statistics, the [yolo] loss, backward, SGD update with momentum .9 and decay .0005), same cfg, same "
           f"starting weights, seeded random images and 2-6 random boxes per image in Darknet's truth layout. "
           f"pydarknet: `net.train_datum(X, truth)`; PyTorch: `bench/torch_net.py`'s translation of the cfg in a "
           f"process of its own. 2 threads each. Warm-up, then repetitions interleaved (pydarknet batch 8, PyTorch "
           f"batch 8, pydarknet batch 1, ...) with a 0.1 s pause before each; medians. The batch-1 row compares with "
           f"the original Darknet's {ORIGINAL_MS:,} ms from `../shared/darknet/timings.md`, a figure from another "
           f"run: a sanity check, not a side-by-side ratio.", ""]
    out += ["| work | reps | pydarknet ms | pydarknet images/s | compared with | their ms | their images/s | ratio "
            f"| target: <= {TARGET_TRAIN}x PyTorch (goal {GOAL_TRAIN}x); batch 1: faster per image than the original "
            f"Darknet ({ORIGINAL_MS:,} ms) |",
            "|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        met = "met" if r["target_met"] else "not met"
        target = f"{met} ({r['ours_per_image']:,.0f} ms/image)"
        if r["peer_median"] is not None and r["side_by_side"]:
            target = f"<= {TARGET_TRAIN}x: {target_cell(r['ratio'], TARGET_TRAIN, GOAL_TRAIN)}"
        if r["peer_median"] is None:
            out.append(f"| {r['work']} | {r['repeats']} | {r['ours']:,.0f} | {r['ours_images_s']:.2f} | PyTorch "
                       f"| {r['why_not']} | | | {target} |")
            continue
        peer = f"{r['peer']}, this run" if r["side_by_side"] else f"{r['peer']}, timings.md (sanity check)"
        out.append(f"| {r['work']} | {r['repeats']} | {r['ours']:,.0f} | {r['ours_images_s']:.2f} | {peer} "
                   f"| {r['peer_median']:,.0f} | {r['peer_images_s']:.2f} | {r['ratio']:.2f} | {target} |")
    if big_line:
        out.append(big_line)
    out += ["", big_note]
    out.append("")
    if r8["peer_median"] is None:
        out.append(f"PyTorch: {r8['why_not']}.")
    else:
        cost = (f" Darknet's cost at the first timed step: pydarknet {r8['costs'][0][0]:,.2f}, PyTorch "
                f"{r8['costs'][0][1]:,.2f}." if r8["costs"] else "")
        check = ", ".join(f"{c:.1e}" for c in r8["check"])
        out.append(f"PyTorch {r8['torch']['version']} (`pip install {TORCH_PIN}`, {r8['torch']['threads']} threads, "
                   f"`torch.set_flush_denormal(True)`). Its translation is checked before timing: the [yolo] outputs "
                   f"in eval mode against pydarknet's inference forward, relative L2 {check} (limit 1e-4). "
                   f"Loss, a stand-in for pydarknet's [yolo] layer: {LOSS}." + cost)
    out.append("")
    spread = f"pydarknet batch 8 {min(r8['ours_ms']):,.0f}-{max(r8['ours_ms']):,.0f}"
    if r8["peer_ms"]:
        spread += f", PyTorch batch 8 {min(r8['peer_ms']):,.0f}-{max(r8['peer_ms']):,.0f}"
    spread += f", pydarknet batch 1 {min(r1['ours_ms']):,.0f}-{max(r1['ours_ms']):,.0f}"
    if big[0] is not None:
        spread += (f", pydarknet yolov3 batch {big[0]['batch']} {min(big[0]['ours_ms']):,.0f}-"
                   f"{max(big[0]['ours_ms']):,.0f}")
        if big[0]["peer_ms"]:
            spread += f", PyTorch yolov3 {min(big[0]['peer_ms']):,.0f}-{max(big[0]['peer_ms']):,.0f}"
    out.append(f"Range of the training repetitions (ms): {spread}.")
    return out


def target_cell(ratio, target, goal=GOAL):
    if ratio is None:
        return ""
    met = "met" if ratio <= target else "not met"
    return f"{met}{', goal met' if goal and ratio <= goal else ''}"


def forward_lines(rows, busy):
    """The forward table: the quiet rows, then the busy ones (busy: (rows, None) or (None, why not))."""
    busy_rows, busy_note = busy
    out = [f"| work | BFLOP | reps | pydarknet ms | OpenCV ms | ratio | target: <= {TARGET}x quiet, <= {TARGET_BUSY}x "
           f"one core busy (goal {GOAL}x) |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows + (busy_rows or []):
        if r["cv"] is None:
            out.append(f"| {r['work']} | {r['bflops']:.1f} | {r['repeats']} | {r['ours']:,.0f} | OpenCV cannot read "
                       f"the cfg: `{r['cv_error']}` | | |")
            continue
        target = TARGET_BUSY if r.get("busy") else TARGET
        out.append(f"| {r['work']} | {r['bflops']:.1f} | {r['repeats']} | {r['ours']:,.0f} | {r['cv']:,.0f} "
                   f"| {r['ratio']:.2f} | {target_cell(r['ratio'], target)} |")
    out.append("")
    if busy_rows is None:
        out += [f"One core busy: {busy_note}.", ""]
    else:
        out += ["\"One core busy\": the same cases with a `multiprocessing` process spinning `while True: pass` "
                "beside them, started before the first of these rows and killed after the last; each side keeps "
                "its 2 threads.", ""]
    return out


def peers_lines(peers):
    """The network alone against ONNX Runtime, OpenVINO and OpenCV DNN (bench/bench_peers.py), and issue 28's
    targets."""
    found, note = peers
    if found is None:
        return [f"Against the deployment runtimes: {note}.", ""]
    results, end_to_end, profile, gemm_rate = found
    from bench.bench_peers import end_to_end_lines, gemm_rate_lines, layer_profile_lines, table, target_lines
    return ["The network alone against the runtimes users deploy YOLO on (`bench/bench_peers.py`): a letterboxed "
            "float32 array in, the heads out; ONNX Runtime and OpenVINO run the graph `pydarknet export` writes "
            "(no `-decode`), OpenCV DNN reads the cfg. Same sane random weights and seeded input on every side, each "
            "side a persistent process of its own on 2 threads, each peer's heads checked against pydarknet's "
            "first; repetitions interleaved (a round: every side once). \"pause\": batch 1 after 0.1 s idle (a "
            "camera, a request queue); \"back to back\": the second of two passes in a row; \"batch 8\": ms an "
            "image. Medians (min-max) in ms; a ratio below 1 is pydarknet ahead.", ""] + table(results) + [
            "", "Issue 28's targets:"] + target_lines(results) + [""] + end_to_end_lines(end_to_end) + [""] + \
        layer_profile_lines(profile) + [""] + gemm_rate_lines(gemm_rate) + [""]


def process_lines(process):
    """Whole detect processes: cold-start wall time and peak resident memory."""
    rows, note = process
    if rows is None:
        return [f"Whole processes: {note}.", ""]
    out = ["Whole processes, each started fresh: `python -m pydarknet detect CFG WEIGHTS dog.jpg` against "
           "`bench/opencv_detect.py` (the same detection with OpenCV DNN: `readNetFromDarknet`, `imread`, "
           "`blobFromImage` 1/255 416x416 swapRB, `forward(getUnconnectedOutLayersNames())`, boxes above .5, "
           "`NMSBoxes` .45, drawn, `imwrite`), same cfg and weights. A warm-up run of each first (numba's cache warm), "
           "then the runs alternated; medians of the wall time (spawn to exit) and of the child's peak resident "
           "memory (`os.wait4` ru_maxrss, both taken by `bench/peak_rss.py`, a small process that starts the child: "
           "a child forked straight from the bench would inherit its peak).", "",
           "| work | reps | pydarknet | OpenCV | ratio | target |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        work = f"{r['name']} {r['size']} detect process"
        if "why_not" in r:
            out.append(f"| {work} | | {r['why_not']} | | | |")
            continue
        if "time" in r["what"]:
            out.append(f"| {work}, wall time | {r['repeats']} | {r['ours_ms']:,.0f} ms | {r['cv_ms']:,.0f} ms "
                       f"| {r['ratio_ms']:.2f} | <= {TARGET_PROCESS}x: "
                       f"{target_cell(r['ratio_ms'], TARGET_PROCESS, 1.0)}"
                       f" (goal 1.0x) |")
        target = (f"<= {TARGET_MEMORY}x: {target_cell(r['ratio_mib'], TARGET_MEMORY, None)}" if r["name"] == "yolov3"
                  else "(for reference)")
        out.append(f"| {work}, peak RSS | {r['repeats']} | {r['ours_mib']:,.0f} MiB | {r['cv_mib']:,.0f} MiB "
                   f"| {r['ratio_mib']:.2f} | {target} |")
    return out + [""]


def profile_lines(profile):
    rows, note = profile
    if rows is None:
        return [f"Profile: {note}.", ""]
    from bench.bench_profile import table
    return ["Profile (`bench/bench_profile.py`): pydarknet's time by layer kind and pass, each layer's `forward`, "
            "`backward`, `zero_delta` and `update` wrapped with a timer; per layer the median of the steps after a "
            "warm-up, summed by kind. Convolutions by how the forward pass ran: 3x3 Winograd, 3x3 im2col, 1x1, "
            "strided.", ""] + table(rows) + [""]


def big_lines(big):
    """The yolov3 batch-8 training row's table line and its GEMM-floor note."""
    r, note = big
    if r is None:
        return None, f"yolov3 training step: {note}."
    peer = (f"| {r['peer']}, this run | {r['peer_median']:,.0f} | {r['peer_images_s']:.2f} | {r['ratio']:.2f} "
            if r["peer_median"] else f"| PyTorch | {r['why_not']} | | ")
    floor = (f"<= {TARGET_TRAIN}x: {target_cell(r['ratio'], TARGET_TRAIN, GOAL_TRAIN)}; " if r["peer_median"] else "")
    floor += f"GEMM floor {r['floor_ms']:,.0f} ms, pydarknet {r['ours'] / r['floor_ms']:.1f}x it"
    line = f"| {r['work']} | {r['repeats']} | {r['ours']:,.0f} | {r['ours_images_s']:.2f} {peer}| {floor} |"
    m, k, n = __import__("bench.bench_train", fromlist=["GEMM_SHAPE"]).GEMM_SHAPE
    note = (f"GEMM floor of the yolov3 row: three times the forward FLOPs ({r['bflops']:.1f} BFLOP x batch "
            f"{r['batch']} x 3, forward, input gradient and weight gradient) over the float32 GEMM rate numpy "
            f"reaches here, {r['gemm_gflops']:,.0f} GFLOP/s (`np.matmul` {m}x{k} @ {k}x{n}, best of 3, 2 threads).")
    if r["check"]:
        note += " Its torch translation check: relative L2 " + ", ".join(f"{c:.1e}" for c in r["check"]) + "."
    return line, note


def cpu_section(rows, nms, train, started, load_before, load_after, machine, busy=((), None), process=(None, "not run"),
                big=(None, "not run"), profile=(None, "not run"), tools=(None, "not run"), quick_run=False,
                demo=(None, "not run"), transfer=(None, "not run"), peers=(None, "not run")):
    seconds, nms_note = nms
    out = [SECTION, "",
           f"Measured {started:%Y-%m-%d %H:%M} UTC by `make bench` (`python -m bench.run`)"
           + (" in quick mode (1-2 repetitions, small cases: a smoke run, not a measurement)." if quick_run else "."),
           ""]
    out += machine + [environment_line()]
    out += [f"- Load average before / after the run: {load_before} / {load_after} (other processes share the "
            f"machine: absolute times vary; the ratios, measured side by side, are what count)", ""]
    out += peers_lines(peers)
    out += ["pydarknet against OpenCV alone (issue 11's rows: yolov3 at 608 and one core busy; the quiet 416 rows "
            "are in the table above). Batch-1 forward passes, same cfg, same `.weights` file (pydarknet's sane "
            "random weights, convolutions at half He scale) and same seeded input for both. Each side warmed up, "
            "then repetitions interleaved (pydarknet, OpenCV, pydarknet, ...) with a 0.1 s pause before each; "
            "medians. OpenCV runs in a process of its own (in one process the two libraries' idle threads starved "
            "each other). OpenCV: `readNetFromDarknet`, `DNN_BACKEND_OPENCV`, `DNN_TARGET_CPU`, "
            "`forward(getUnconnectedOutLayersNames())`.", ""]
    out += forward_lines(rows, busy)
    if seconds is not None:
        out.append(f"NMS: `do_nms_sort` on yolov3-608's worst case (22,743 boxes, 80 classes, every box above "
                   f"thresh .05; `bench/bench_nms.py`, best of 3): **{seconds * 1e3:,.0f} ms** "
                   f"(no OpenCV counterpart timed).")
    else:
        out.append(f"NMS: {nms_note}.")
    out.append("")
    spread = ", ".join(f"{r['name']} {r['size']}{' busy' if r.get('busy') else ''}: pydarknet "
                       f"{min(r['ours_ms']):,.0f}-{max(r['ours_ms']):,.0f}"
                       + (f", OpenCV {min(r['cv_ms']):,.0f}-{max(r['cv_ms']):,.0f}" if r["cv_ms"] else "")
                       for r in rows + list(busy[0] or []))
    out.append(f"Range of the repetitions (ms): {spread}.")
    out.append("")
    out += process_lines(process)
    denormals = sum(r["denormals"] for r in rows)
    out.append(f"Denormals: pydarknet flushes them to zero in its fused bias/activation pass (Darknet's `-Ofast` "
               f"does the same), and OpenCV runs `Net::forward` under `FPDenormalsIgnoreHintScope` (FTZ/DAZ), so "
               f"random weights do not slow either side down. Denormal values left in pydarknet's layer outputs "
               f"after the timed runs: {denormals}.")
    out.append("")
    out += train_lines(train, big)
    out += [""] + profile_lines(profile)
    out += [""] + tools_lines(tools)
    out += [""] + demo_lines(demo)
    out += [""] + transfer_lines(transfer)
    return "\n".join(out) + "\n"


def tools_lines(tools):
    """The dataset tools' row: `dataset check -fast` on many label files, against issue 12's 30 s."""
    from bench.bench_check import TARGET_S
    result, why = tools
    if result is None:
        return [f"Dataset tools: {why}."]
    met = "met" if result["seconds"] <= TARGET_S else "NOT met"
    return [f"Dataset tools: `pydarknet dataset check DATA -fast` on {result['files']:,} label files of 5 lines "
            f"(`bench/bench_check.py`, the whole process; {result['problems']} planted problems reported): "
            f"**{result['seconds']:.1f} s** (target <= {TARGET_S:.0f} s: {met})."]


def demo_lines(demo):
    """The video row: `detector demo`'s whole pipeline against the forward passes alone (bench/bench_demo.py)."""
    result, why = demo
    if result is None:
        return [f"Video: {why}."]
    from bench.bench_demo import result_line
    return [f"Video (`bench/bench_demo.py`, each run a process of its own, interleaved): {result_line(result)}."]


def transfer_lines(transfer):
    """The classifier and transfer-learning rows (bench/bench_transfer.py)."""
    result, why = transfer
    if result is None:
        return [f"Classifier and transfer learning: {why}."]
    from bench.bench_transfer import result_lines
    return result_lines(result)


def main():
    from bench import bench_process, bench_profile, bench_train
    fast = quick()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load_average()
    peers = guarded("the network alone against ONNX Runtime, OpenVINO and OpenCV DNN", bench_peers.run,
                    quick=fast, log=log)
    cases = [("yolov3", 416 if fast else 608, 1, 1 if fast else 5, 120)]     # the 416 rows: the peers' table
    busy_cases = [("yolov3-tiny", 416, 1, 2, 5)] if fast else bench_forward.BUSY_CASES
    print("-- forward passes", flush=True)
    rows = bench_forward.run(cases, log=log)
    for r in rows:
        log(f"{r['work']}: pydarknet {r['ours']:,.0f} ms, "
            + (f"OpenCV {r['cv']:,.0f} ms, ratio {r['ratio']:.2f}" if r["cv"] else f"OpenCV: {r['cv_error']}"))
    busy = guarded("forward passes, one core busy", bench_forward.run, busy_cases, log=log, busy=True)
    for r in busy[0] or []:
        log(f"{r['work']}: pydarknet {r['ours']:,.0f} ms, OpenCV {r['cv']:,.0f} ms, ratio {r['ratio']:.2f}")
    process = guarded("whole detect processes", bench_process.run, log=log, repeats=1 if fast else 5)
    nms = run_nms()
    print(f"NMS: {nms[0]:.3f} s" if nms[0] is not None else f"NMS: {nms[1]}", flush=True)
    if fast:
        print("-- training steps (quick)", flush=True)
        try:
            train = bench_train.run(log=log, repeats=1, warmup=1, budget_s=0), None
        except Exception as e:  # noqa: BLE001  (a failed bench is a row that says why)
            traceback.print_exc()
            train = None, f"failed: {type(e).__name__}: {e}"
    else:
        train = run_train()
    for r in train[0] or []:
        peer = f"{r['peer']} {r['peer_median']:,.0f} ms, ratio {r['ratio']:.2f}" if r["peer_median"] else r["why_not"]
        print(f"{r['work']}: pydarknet {r['ours']:,.0f} ms, {peer}", flush=True)
    if train[0] is None:
        print(f"Training steps: {train[1]}", flush=True)
    big = guarded("yolov3 training step, and the GEMM floor", bench_train.run_big, log=log,
                  **(dict(repeats=1, warmup=0, batch=2) if fast else {}))
    profile = guarded("profile", bench_profile.run, log=log, **(dict(steps=1, batch=2) if fast else {}))
    from bench import bench_check
    tools = guarded("dataset check", bench_check.run, log=log, **(dict(files=10_000) if fast else {}))
    from bench import bench_demo
    demo = guarded("detector demo", bench_demo.run, log=log, **(dict(frames=40, repeats=1) if fast else {}))
    from bench import bench_transfer
    transfer = guarded("classifier and transfer learning", bench_transfer.run, log=log,
                       **(dict(iterations=5, quick=True) if fast else {}))
    section = cpu_section(rows, nms, train, started, load_before, load_average(), machine_lines(), busy=busy,
                          process=process, big=big, profile=profile, tools=tools, quick_run=fast, demo=demo,
                          transfer=transfer, peers=peers)
    write_section(section, RESULTS, first=True)
    print(f"wrote {os.path.relpath(RESULTS)}")


if __name__ == "__main__":
    main()
