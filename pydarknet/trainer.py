"""`detector train`: Darknet's train_detector loop, with backups that survive interrupts and a loss chart."""
import json
import math
import os
import signal
import sys
import time
import warnings

import numpy as np

from . import files
from .cfg import read_data
from .check import check_lists, summary
from .data import DataWarning, Loader
from .detector import load_network
from .errors import DarknetError
from .evaluate import detector_map
from .weights import save_weights


class TrainingStopped(DarknetError):
    """Training stopped on purpose (a NaN loss); the message says where and what was kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, raised after `backup` was saved (the command line exits 130, as after SIGINT)."""

    def __init__(self, backup):
        super().__init__(f"saved {backup}")
        self.backup = backup


def base_name(cfgfile):
    """Darknet's basecfg: the cfg file name without folder and extension."""
    return os.path.splitext(os.path.basename(cfgfile))[0]


def backup_names(backup, base, iteration):
    """The files Darknet writes after an iteration: `<cfg>.backup` every 100, `<cfg>_<N>.weights` every 100 up to
    1000 and then every 10000."""
    names = []
    if iteration % 100 == 0:
        names.append(os.path.join(backup, f"{base}.backup"))
    if iteration % 10000 == 0 or (iteration < 1000 and iteration % 100 == 0):
        names.append(os.path.join(backup, f"{base}_{iteration}.weights"))
    return names


def head_layer(net):
    """The layer whose settings drive the data (Darknet takes net->layers[net->n - 1])."""
    return net.layers[-1]


def next_map_at(last, images, batch, burn_in):
    """The iteration of -map's next evaluation after the one at `last` (or the run's start), as AlexeyAB schedules
    it: every 4 epochs of `images` in batches of `batch`, at least 100 iterations apart, not before burn_in (and,
    in the loop, at the last iteration too). The shapes demo: 1,600 images in 16s, every 400 iterations."""
    return max(last + max(4 * images // batch, 100), burn_in)


def make_loader(net, paths, seed, workers, start=0):
    """Darknet's load_args for the network: DETECTION_DATA for yolo/region heads, REGION_DATA for v1's grid."""
    head = head_layer(net)
    v1 = head.type == "detection"
    return Loader(paths, (net.w, net.h), kind="region" if v1 else "detection", batch=net.batch * net.subdivisions,
                  classes=head.classes, max_boxes=getattr(head, "max_boxes", 90), jitter=head.jitter, hue=net.hue,
                  saturation=net.saturation, exposure=net.exposure, side=getattr(head, "side", 7), seed=seed,
                  workers=workers, start=start)


class Chart:
    """chart.png: the loss of every iteration, its running average, and mAP points (as AlexeyAB's fork draws).

    The points are also kept in a sidecar beside the chart (chart.png -> chart.json), so that a run resumed from
    a backup draws one chart for the whole run: `resume(iteration)` reads the points up to that iteration.
    """

    def __init__(self, path, max_batches, title="training"):
        self.path, self.max_batches, self.title = path, max_batches, title
        self.history = os.path.splitext(path)[0] + ".json"
        self.iterations, self.losses, self.averages, self.maps = [], [], [], []
        self.last_draw = 0.0

    def add(self, iteration, loss, average):
        self.iterations.append(iteration)
        self.losses.append(loss)
        self.averages.append(average)

    def add_map(self, iteration, value):
        self.maps.append((iteration, value))

    def resume(self, iteration):
        """Take the earlier points of this run (title = the cfg's name) up to `iteration` from the sidecar."""
        try:
            with open(self.history, encoding="utf-8") as f:
                saved = json.load(f)
            if saved["title"] != self.title:
                return
            points = [p for p in zip(saved["iterations"], saved["losses"], saved["averages"]) if p[0] <= iteration]
            maps = [(i, v) for i, v in saved["maps"] if i <= iteration]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"{self.history}: cannot read the earlier chart points ({e}); the chart starts here")
            return
        for point in points:
            self.add(*point)
        self.maps = maps + self.maps

    def save_history(self):
        with files.replacing(self.history) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump({"title": self.title, "iterations": self.iterations, "losses": self.losses,
                       "averages": self.averages, "maps": self.maps}, f)

    def draw(self, force=False):
        if not force and time.time() - self.last_draw < 10:
            return
        self.last_draw = time.time()
        self.save_history()
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        ax.plot(self.iterations, self.losses, color="#9ecae1", linewidth=.8, label="loss")
        ax.plot(self.iterations, self.averages, color="#08519c", linewidth=1.5, label="avg loss")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.set_xlim(0, max(self.max_batches, self.iterations[-1] if self.iterations else 1))
        if all(v > 0 and math.isfinite(v) for v in self.losses):
            ax.set_yscale("log")        # the first iterations' loss is 100x the rest
        ax.grid(alpha=.3)
        if self.maps:
            right = ax.twinx()
            its, values = zip(*self.maps)
            right.plot(its, [100 * v for v in values], "o-", color="#e6550d", label="mAP@0.5 %")
            right.set_ylim(0, 100)
            right.set_ylabel("mAP@0.5 (%)")
            right.legend(loc="upper right")
        ax.legend(loc="upper left")
        ax.set_title(f"{self.title}: loss per iteration")
        fig.tight_layout()
        with files.replacing(self.path) as tmp:
            fig.savefig(tmp, format=os.path.splitext(self.path)[1][1:] or "png")
        plt.close(fig)


def repeat_conditions():
    """What a seeded run's bytes depend on besides the seed: the BLAS kernel picked for this CPU, the thread count
    and the versions of the numeric libraries (their float rounding). Loader workers and machine load do not."""
    import numba
    from threadpoolctl import threadpool_info
    pools = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    pools = [pool for pool in pools if "numpy" in pool["filepath"]] or pools      # not OpenCV's own copy
    blas = [f"{pool['internal_api']} {pool['version']} {pool.get('architecture') or ''}".strip() for pool in pools]
    return (f"{', '.join(blas) or 'this BLAS'}, {numba.get_num_threads()} threads, numpy {np.__version__}, "
            f"numba {numba.__version__}")


def _format_eta(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_detector(datacfg, cfgfile, weightfile=None, clear=False, calc_map=False, seed=None, workers=4,
                   max_batches=None, chart="chart.png", out=None, progress=None):
    """Train as Darknet's train_detector does; returns the path of the final weights.

    Per iteration it prints Darknet's line (`N: loss, avg avg, rate rate, t seconds, images images`) followed by
    images/s and an ETA. Backups go to the .data file's `backup` folder as Darknet names and schedules them, each
    written atomically. Ctrl-C saves `<cfg>.backup` and raises TrainingInterrupted (a KeyboardInterrupt); a NaN or
    infinite loss stops training with a message, keeping the last good backup. `max_batches` overrides the cfg's
    (for short runs and tests). chart.png and its sidecar chart.json cover the whole run across resumes.
    `progress`, when given, hears of each iteration (`iteration(i, max_batches, avg_loss, images_s, eta_s)`) and
    each mAP (`mean_ap(i, value)`), for a caller that shows its own progress (make demo's one line).
    """
    run = _Training(datacfg, cfgfile, weightfile, clear, seed, max_batches, out or sys.stdout)
    run.progress = progress
    run.start(calc_map, workers, chart)
    return run_until_done(run)


def run_until_done(run):
    """The loop every trainer shares: iterations until the run is done or interrupted (Ctrl-C only sets a flag, so
    that a step is never cut in half); then the final weights."""
    previous_handler = signal.signal(signal.SIGINT, run.on_interrupt) if _main_thread() else None
    try:
        while not run.interrupted and not run.done():
            run.iteration()
        return run.finish()
    finally:
        run.close()
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)


class _Training:
    """One train_detector run, step by step: set-up, then per iteration the multi-scale resize, the train step, the
    logged line, the backups and the -map evaluation; then the final weights (or the interrupt's backup)."""

    def __init__(self, datacfg, cfgfile, weightfile, clear, seed, max_batches, out):
        """Set-up, printing what Darknet prints before its loop: the network, its options and the seed."""
        self.datacfg, self.cfgfile, self.out = datacfg, cfgfile, out
        self.options = read_data(datacfg)
        self.train_list = self.options.path_of("train", "data/train.list")
        self.backup = self.options.path_of("backup", "backup")
        os.makedirs(self.backup, exist_ok=True)
        self.base = base_name(cfgfile)
        print(self.base, file=out)
        self.seed = int(time.time()) if seed is None else seed
        # with -seed, the layers the weights file leaves out (a fine-tune's head) start the same every time
        net = self.net = load_network(cfgfile, weightfile, clear, verbose=True, seed=self.seed)
        if max_batches is not None:
            net.max_batches = max_batches
        print(f"Learning Rate: {net.learning_rate:g}, Momentum: {net.momentum:g}, Decay: {net.decay:g}", file=out)
        self.imgs = net.batch * net.subdivisions
        print(f"Seed: {self.seed} (-seed {self.seed} repeats this run byte for byte on {repeat_conditions()})",
              file=out)
        self.rng = np.random.default_rng(self.seed)
        self.head = head_layer(net)
        self.avg_loss = -1.0
        self.lowest_avg = math.inf      # for the stop message: how far the loss had climbed before it overflowed
        self.count = 0
        self.last_good = None
        self.interrupted = False
        self.progress = None

    def start(self, calc_map, workers, chart):
        """The loader from the current batch on, the -map check and the chart (resumed with the weights)."""
        net = self.net
        self.loader = make_loader(net, self.train_list, self.seed, workers, start=net.current_batch())
        self.check_dataset(calc_map)
        self.calc_map = calc_map
        self.next_map = next_map_at(net.current_batch(), self.loader.images, self.imgs, net.burn_in)
        if calc_map and not self.options.get("valid"):
            warnings.warn(f"{self.datacfg}: no valid= list, so -map measures mAP on the training list "
                          f"{self.train_list} (as Darknet does)", DataWarning, stacklevel=3)
        self.start_clock(chart)

    def start_clock(self, chart):
        """The chart (resumed with the weights' iteration) and the clock images/s and the ETA are counted from."""
        net = self.net
        self.chart = Chart(chart, net.max_batches, self.base) if chart else None
        if self.chart and net.current_batch() > 0:
            self.chart.resume(net.current_batch())
        self.started, self.start_batch = time.time(), net.current_batch()

    def check_dataset(self, calc_map):
        """`dataset check -fast` on the lists it uses before the first iteration: how many problems and where they
        are listed (training goes on, as Darknet's does, skipping what the loader cannot use)."""
        keys = ("train", "valid") if calc_map and os.path.exists(self.options.path_of("valid", "")) else ("train",)
        problems = check_lists(self.datacfg, self.cfgfile, fast=True, out=None, progress=False, keys=keys)
        print(f"dataset check -fast: {summary(problems, fast=False)}", file=self.out, flush=True)

    def done(self):
        return self.net.current_batch() >= self.net.max_batches

    def on_interrupt(self, signum, frame):
        self.interrupted = True

    def iteration(self):
        if getattr(self.head, "random", 0) and self.count % 10 == 0:
            self.resize()
        self.count += 1
        loss, t0 = self.train_step()
        i = self.log(loss, t0)
        self.back_up(i)
        if self.calc_map and (i >= self.next_map or i == self.net.max_batches):
            self.next_map = next_map_at(i, self.loader.images, self.imgs, self.net.burn_in)
            self.measure_map(i)
        if self.chart:
            self.chart.draw(force=i == self.net.max_batches)

    def resize(self):
        """Darknet's multi-scale training: a new square size, 320..608 in steps of 32 (608 near the end)."""
        dim = (int(self.rng.integers(10)) + 10) * 32
        if self.net.current_batch() + 200 > self.net.max_batches:
            dim = 608
        print(f"Resizing\n{dim}", file=self.out)
        self.loader.set_size(dim, dim)
        self.net.resize(dim, dim)

    def train_step(self):
        """Load a batch and train on it; returns the loss and when training started. A NaN loss stops the run."""
        t0 = time.time()
        x, truth = self.loader.next()
        print(f"Loaded: {time.time() - t0:f} seconds", file=self.out)
        t0 = time.time()
        loss = train_network(self.net, x, truth)
        if not math.isfinite(loss):
            raise TrainingStopped(self.stop_message(loss))
        return loss, t0

    def stop_message(self, loss):
        """Why a NaN or infinite loss stopped the run, in one line: after finite iterations the steps diverged (the
        learning rate, as in Darknet); at the first iteration the input, the labels or the weights hold it."""
        net = self.net
        where = f"{self.cfgfile}: the loss became {loss} at iteration {net.current_batch()}"
        kept = f"; the last good weights are in {self.last_good}" if self.last_good else ""
        if self.avg_loss < 0:
            return (f"{where}, the first one: a NaN or infinity in the images, the labels or the weights "
                    f"(pydarknet dataset check {self.datacfg} finds bad labels){kept}")
        grown = (f" after growing from {self.lowest_avg:.4g} (its lowest average) to {self.last_loss:.4g}"
                 if self.last_loss > 10 * self.lowest_avg else "")
        return (f"{where}{grown}: training diverged. The steps are too large for this network and data (Darknet's "
                f"own training diverges the same way): lower learning_rate (now {net.learning_rate:g}) or raise "
                f"burn_in (now {net.burn_in}); the README's 'Fine-tuning' says more{kept}")

    def average(self, loss):
        """Darknet's running average of the loss (.9 old + .1 new), and what the stop message needs."""
        self.avg_loss = loss if self.avg_loss < 0 else self.avg_loss * .9 + loss * .1
        self.lowest_avg, self.last_loss = min(self.lowest_avg, self.avg_loss), loss

    def log(self, loss, t0):
        """Darknet's line for the iteration, with images/s and an ETA, and the chart's point; returns the
        iteration."""
        net = self.net
        self.average(loss)
        i = net.current_batch()
        seconds = time.time() - t0
        rate = (i - self.start_batch) * self.imgs / max(time.time() - self.started, 1e-9)
        eta = (net.max_batches - i) * self.imgs / max(rate, 1e-9)
        print(f"{i}: {loss:f}, {self.avg_loss:f} avg, {net.current_rate():f} rate, {seconds:f} seconds, "
              f"{i * self.imgs} images, {rate:.1f} images/s, ETA {_format_eta(eta)}", file=self.out, flush=True)
        if self.chart:
            self.chart.add(i, loss, self.avg_loss)
        if self.progress:
            self.progress.iteration(i, net.max_batches, self.avg_loss, rate, eta)
        return i

    def back_up(self, i):
        for name in backup_names(self.backup, self.base, i):
            save_weights(self.net, name)
            self.last_good = name

    def measure_map(self, i):
        value = evaluate_map(self.datacfg, self.net, self.out)
        if self.chart:
            self.chart.add_map(i, value)
        if self.progress:
            self.progress.mean_ap(i, value)

    def finish(self):
        """The final weights; after Ctrl-C, `<cfg>.backup` and TrainingInterrupted."""
        if self.interrupted:
            name = os.path.join(self.backup, f"{self.base}.backup")
            save_weights(self.net, name)
            print(f"Interrupted at iteration {self.net.current_batch()}: saved {name}", file=self.out, flush=True)
            raise TrainingInterrupted(name)
        final = self.final_name()
        save_weights(self.net, final)
        print(f"Saved {final}", file=self.out, flush=True)
        return final

    def final_name(self):
        return os.path.join(self.backup, f"{self.base}_final.weights")

    def close(self):
        self.loader.close()
        if self.chart and self.chart.iterations:
            self.chart.draw(force=True)


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def train_network(net, x, truth):
    """Darknet's train_network: the loaded images in chunks of net.batch, one train step each; the mean loss per
    image."""
    total = 0.0
    for start in range(0, x.shape[0], net.batch):
        total += net.train_datum(x[start:start + net.batch], truth[start:start + net.batch])
    return total / x.shape[0]


def evaluate_map(datacfg, net, out):
    """mAP@0.5 on the .data file's `valid` list with the network as it is (for -map), net.batch images a forward
    pass: the same detections as one at a time (inference treats each image alone), in about 2/3 of the time."""
    train = net.train
    try:
        return detector_map(datacfg, net=net, batch=net.batch)["map"]
    finally:
        net.train = train
