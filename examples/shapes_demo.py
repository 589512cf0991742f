"""`make demo` in one process, with one progress line for the whole run.

    python examples/shapes_demo.py [OUT]     # OUT defaults to out/ (make demo)

The four steps the target always ran: generate the shapes dataset (OUT/shapes, 2,000 images at 160x160, seed 1),
train cfg/yolov3-tiny-shapes.cfg from scratch with -map (seed 1; chart in OUT/chart.png), `detector map` on the final
weights, and `detector test` on data/shapes-sample.png (OUT/predictions.jpg). What the commands print goes to
OUT/demo.log; the terminal gets one line that says which step runs and how far it is (on a terminal it is rewritten
in place; into a file or pipe a line is written every 30 seconds), then the results.
"""
import contextlib
import os
import sys
import time

from pydarknet.errors import DarknetError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # it reads the repository's cfg/ and data/
CFG = os.path.join(REPO, "cfg", "yolov3-tiny-shapes.cfg")
SAMPLE = os.path.join(REPO, "data", "shapes-sample.png")


def _clock(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProgressLine:
    """One status line on `stream`: rewritten in place on a terminal, else written at most every `every` seconds
    (and whenever the step changes)."""

    def __init__(self, stream, every=30.0):
        self.stream, self.every = stream, every
        self.tty = hasattr(stream, "isatty") and stream.isatty()
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


def run(out="out", images=2000, max_batches=None, line=None, cfg=CFG, sample=SAMPLE):
    """The four steps, their output in OUT/demo.log; returns a dict of the results (mAP, paths, seconds)."""
    from pydarknet.data import shapes
    from pydarknet.detector.map import detector_map
    from pydarknet.detector.test import detect_images
    from pydarknet.detector.train import train_detector

    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    line = line or ProgressLine(sys.stdout)
    log_path = os.path.join(out, "demo.log")
    data_dir = os.path.join(out, "shapes")
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        line.show("dataset", f"drawing {images:,} images into {data_dir}")
        dataset = shapes.generate(data_dir, n=images, size=160, seed=1)
        line.show("training", "loading the network")
        weights = train_detector(dataset.data, cfg, calc_map=True, seed=1, max_batches=max_batches,
                                 chart=os.path.join(out, "chart.png"), out=log, progress=line)
        line.show("detector map", f"{len(dataset.valid):,} validation images")
        result = detector_map(dataset.data, cfg, weights)
        line.show("detector test", os.path.basename(sample))
        predictions = os.path.join(out, "predictions")
        detect_images(dataset.data, cfg, weights, sample, .25, .5, predictions)
    line.end()
    return {"map": result["map"], "weights": weights, "predictions": predictions + ".jpg", "log": log_path,
            "chart": os.path.join(out, "chart.png"), "seconds": time.perf_counter() - line.started}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    line = ProgressLine(sys.stdout)
    try:
        result = run(argv[0] if argv else "out", line=line)
    except KeyboardInterrupt as e:
        line.end()
        saved = f" (saved {e.backup})" if getattr(e, "backup", None) else ""
        print(f"make demo: interrupted{saved}", file=sys.stderr)
        return 130
    except (DarknetError, OSError, ValueError) as e:
        line.end()
        print(f"make demo: {e}", file=sys.stderr)
        return 1
    print(f"make demo: mAP@0.5 {result['map']:.3f} on the validation images, in {result['seconds'] / 60:.1f} min\n"
          f"  weights      {result['weights']}\n  predictions  {result['predictions']}\n"
          f"  chart        {result['chart']}\n  log          {result['log']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
