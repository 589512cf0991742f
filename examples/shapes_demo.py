"""`make demo` in one process, with one progress line for the whole run.

    python examples/shapes_demo.py [OUT]     # OUT defaults to out/ (make demo)

The four steps the target always ran: generate the shapes dataset (OUT/shapes, 2,000 images at 160x160, seed 1),
train cfg/yolov3-tiny-shapes.cfg from scratch with -map (seed 1; chart in OUT/chart.png), `detector map` on the final
weights, and `detector test` on data/shapes-sample.png (OUT/predictions.jpg). Where MPI is installed (the `dist`
extra; make install has it) and the machine has 2 cores or more, the program runs itself as 2 MPI ranks of 1 thread
with `-sync allreduce` (the one-process run to float rounding, 1.2x its images/s: bench/RESULTS.md "Several
ranks"); PYDARKNET_DEMO_RANKS=1 keeps one process. What the commands print goes to
OUT/demo.log; the terminal gets one line that says which step runs and how far it is (on a terminal it is rewritten
in place; into a file or pipe a line is written every 30 seconds), then the results.
"""
import contextlib
import os
import sys
import time

from pydarknet.errors import DarknetError

RANKS = 2       # make demo's MPI ranks where it can have them (1 thread each)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # it reads the repository's cfg/ and data/
CFG = os.path.join(REPO, "cfg", "yolov3-tiny-shapes.cfg")
SAMPLE = os.path.join(REPO, "data", "shapes-sample.png")


def _clock(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProgressLine:
    """One status line on `stream`: rewritten in place on a terminal, else written at most every `every` seconds
    (and whenever the step changes)."""

    def __init__(self, stream, every=30.0, tty=None):
        self.stream, self.every = stream, every
        self.tty = hasattr(stream, "isatty") and stream.isatty() if tty is None else tty
        self.started = time.perf_counter()
        self.last, self.step, self.width = None, None, 0
        self.map_text = ""

    def show(self, step, text):
        now = time.perf_counter()
        line = f"make demo [{_clock(now - self.started)}] {step}: {text}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        elif step != self.step or self.last is None or now - self.last >= self.every:
            self.stream.write(line + "\n")
            self.last = now
        self.step = step
        self.stream.flush()

    def end(self):
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()

    # the trainer's progress interface
    def iteration(self, i, total, avg_loss, images_s, eta_s):
        self.show("training", f"iteration {i}/{total}, avg loss {avg_loss:.3f}{self.map_text}, {images_s:.1f} "
                              f"images/s, ETA {_clock(eta_s)}")

    def mean_ap(self, i, value):
        self.map_text = f", mAP@0.5 {value:.3f} at {i}"


def ranks_to_use():
    """RANKS where mpi4py and its mpiexec are installed and the machine has a core a rank ($PYDARKNET_DEMO_RANKS
    overrides), else 1."""
    import importlib.util
    wanted = os.environ.get("PYDARKNET_DEMO_RANKS", "")
    if wanted.isdigit():
        return max(1, int(wanted))
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    usable = importlib.util.find_spec("mpi4py") is not None and os.access(mpiexec, os.X_OK)
    return RANKS if usable and (os.cpu_count() or 1) >= RANKS else 1


def run(out="out", images=2000, max_batches=None, line=None, cfg=CFG, sample=SAMPLE):
    """The four steps, their output in OUT/demo.log; returns a dict of the results (mAP, paths, seconds). On
    several MPI ranks rank 0 draws the dataset, prints and writes; the ranks train together and share the valid
    list; rank 0 alone draws the predictions."""
    from pydarknet.cli import set_threads
    from pydarknet.data import shapes
    from pydarknet.detector.map import detector_map
    from pydarknet.detector.test import detect_images
    from pydarknet.detector.train import train_detector
    from pydarknet.parallel.comm import world
    from pydarknet.parallel.replicas import sync_for

    comm = world()
    if comm.size > 1:
        set_threads(max(1, (os.cpu_count() or 1) // comm.local_size))
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    line = line or ProgressLine(sys.stdout if comm.rank == 0 else open(os.devnull, "w"))
    log_path = os.path.join(out, "demo.log") if comm.rank == 0 else os.devnull
    data_dir = os.path.join(out, "shapes")
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        line.show("dataset", f"drawing {images:,} images into {data_dir}")
        dataset = shapes.generate(data_dir, n=images, size=160, seed=1) if comm.rank == 0 else None
        dataset = comm.broadcast_object(dataset)        # the others wait for rank 0's files
        line.show("training", "loading the network" + (f" ({comm.size} MPI ranks)" if comm.size > 1 else ""))
        weights = train_detector(dataset.data, cfg, calc_map=True, seed=1, max_batches=max_batches,
                                 chart=os.path.join(out, "chart.png"), out=log, progress=line,
                                 sync=sync_for("allreduce", comm))
        line.show("detector map", f"{len(dataset.valid):,} validation images")
        result = detector_map(dataset.data, cfg, weights)
        line.show("detector test", os.path.basename(sample))
        predictions = os.path.join(out, "predictions")
        if comm.rank == 0:
            detect_images(dataset.data, cfg, weights, sample, .25, .5, predictions)
    line.end()
    return {"map": result["map"], "weights": weights, "predictions": predictions + ".jpg", "log": log_path,
            "chart": os.path.join(out, "chart.png"), "seconds": time.perf_counter() - line.started}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from pydarknet.parallel import comm
    if comm.launched_size() is None and ranks_to_use() > 1:      # this program again, as the ranks of one job
        from pydarknet.parallel.launch import launch
        # the ranks' stdout is mpiexec's terminal, which passes a line on at its end where its own is a file
        return launch(argv, ranks_to_use(), program=[sys.executable, os.path.abspath(__file__), *argv],
                      env_extra={"PYDARKNET_DEMO_TTY": "1" if sys.stdout.isatty() else "0"})
    rank = comm.launched_rank() if comm.launched_size() else 0
    tty = os.environ.get("PYDARKNET_DEMO_TTY")
    line = ProgressLine(sys.stdout if rank == 0 else open(os.devnull, "w"), tty=None if tty is None else tty == "1")
    try:
        result = run(argv[0] if argv else "out", line=line)
    except KeyboardInterrupt as e:      # every rank stops at the same iteration; rank 0 saved
        line.end()
        saved = f" (saved {e.backup})" if getattr(e, "backup", None) else ""
        if rank == 0:
            print(f"make demo: interrupted{saved}", file=sys.stderr)
        return 130
    except (DarknetError, OSError, ValueError) as e:
        line.end()
        print(f"make demo: {f'rank {rank}: ' if comm.launched_size() else ''}{e}", file=sys.stderr)
        if comm.started() is not None and comm.started().size > 1:
            comm.started().abort(1)         # its peers would wait in a collective forever
        return 1
    if rank:
        return 0
    print(f"make demo: mAP@0.5 {result['map']:.3f} on the validation images, in {result['seconds'] / 60:.1f} min\n"
          f"  weights      {result['weights']}\n  predictions  {result['predictions']}\n"
          f"  chart        {result['chart']}\n  log          {result['log']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
