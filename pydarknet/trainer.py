"""The training loop every trainer shares (Darknet's train_detector and train_classifier): `Training`, stepped by
`run_until_done`, with backups that survive interrupts, a NaN stop that says why, and a loss chart."""
import json
import math
import os
import platform
import signal
import warnings
import time

import numpy as np

from . import files
from .cfg import read_data
from .errors import DarknetError
from .gradients import GradientHealth
from .network import load_network
from .parallel.replicas import OneProcess
from .trackers import open_tracker
from .weights import save_weights


class TrainingStopped(DarknetError):
    """Training stopped on purpose (a NaN loss); the message says where and what was kept. Every rank of a run
    stops at the same iteration (`agreed`), rank 0 says why."""

    agreed = True


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, raised after `backup` was saved (the command line exits 130, as after SIGINT)."""

    agreed = True

    def __init__(self, backup):
        super().__init__(f"saved {backup}")
        self.backup = backup


def base_name(cfgfile):
    """Darknet's basecfg: the cfg file name without folder and extension."""
    return os.path.splitext(os.path.basename(cfgfile))[0]


def backup_names(backup, base, iteration, previous=None):
    """The files Darknet writes after an iteration: `<cfg>.backup` every 100, `<cfg>_<N>.weights` every 100 up to
    1000 and then every 10000. Where the counter jumps (`-sync darknet` on several ranks) from `previous`, every
    multiple it crosses counts: Darknet's `i % 100 == 0` would skip some and write no backup at all."""
    crossed = [m for m in range(iteration if previous is None else previous + 1, iteration + 1) if m % 100 == 0]
    names = [os.path.join(backup, f"{base}.backup")] if crossed else []
    return names + [os.path.join(backup, f"{base}_{m}.weights") for m in crossed if m % 10000 == 0 or m < 1000]


class Chart:
    """chart.png: the loss of every iteration, its running average, and mAP points (as AlexeyAB's fork draws).

    The points are also kept in a sidecar beside the chart (chart.png -> chart.json), so that a run resumed from
    a backup draws one chart for the whole run: `resume(iteration)` reads the points up to that iteration.
    """

    def __init__(self, path, max_batches, title="training"):
        self.path, self.max_batches, self.title = path, max_batches, title
        self.history = os.path.splitext(path)[0] + ".json"
        self.iterations, self.losses, self.averages, self.maps, self.validation = [], [], [], [], []
        self.last_draw = 0.0

    def add(self, iteration, loss, average):
        self.iterations.append(iteration)
        self.losses.append(loss)
        self.averages.append(average)

    def add_map(self, iteration, value):
        self.maps.append((iteration, value))

    def add_validation(self, iteration, loss):
        self.validation.append((iteration, loss))

    def resume(self, iteration):
        """Take the earlier points of this run (title = the cfg's name) up to `iteration` from the sidecar."""
        try:
            with open(self.history, encoding="utf-8") as f:
                saved = json.load(f)
            if saved["title"] != self.title:
                return
            points = [p for p in zip(saved["iterations"], saved["losses"], saved["averages"]) if p[0] <= iteration]
            maps = [(i, v) for i, v in saved["maps"] if i <= iteration]
            validation = [(i, v) for i, v in saved.get("validation", []) if i <= iteration]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"{self.history}: cannot read the earlier chart points ({e}); the chart starts here")
            return
        for point in points:
            self.add(*point)
        self.maps = maps + self.maps
        self.validation = validation + self.validation

    def save_history(self):
        with files.replacing(self.history) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump({"title": self.title, "iterations": self.iterations, "losses": self.losses,
                       "averages": self.averages, "maps": self.maps, "validation": self.validation}, f)

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
        if self.validation:
            its, values = zip(*self.validation)
            ax.plot(its, values, "s-", color="#31a354", linewidth=1.5, label="validation loss")
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


class Metrics:
    """metrics.jsonl: what each iteration measured, one JSON object a line (iteration, loss, avg, rate, images_s;
    map where -map measured it), appended as the run goes, beside the chart (beside the backups where the run
    draws none). A run resumed from weights at iteration N keeps the lines up to N, as the chart keeps its points.
    `tracker` (trackers.py, -tracker) gets each record too, and is closed with the file."""

    def __init__(self, path, iteration, tracker=None):
        self.path, self.tracker = path, tracker
        kept = self.earlier(iteration) if iteration > 0 else []
        with files.replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        self.file = open(path, "a", encoding="utf-8")

    def earlier(self, iteration):
        try:
            with open(self.path, encoding="utf-8") as f:
                return [line for line in f if line.strip() and json.loads(line)["iteration"] <= iteration]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"{self.path}: cannot read the earlier lines ({e}); it starts here")
            return []

    def add(self, record):
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tracker:
            self.tracker.log(record)

    def close(self, status="FINISHED", weights=None):
        """The file, and the tracker with how the run ended (FINISHED, KILLED, FAILED) and the weights it left."""
        self.file.close()
        if self.tracker:
            self.tracker.close(status, weights)


def repeat_conditions():
    """What a seeded run's bytes depend on besides the seed: the CPU (its model; the CPU Numba compiles the kernels
    for; the kernel OpenBLAS picks for it: an AMD EPYC on which OpenBLAS picks its SkylakeX kernel, as on an Intel
    Xeon, gave other bytes than the Xeon, with Numba compiling for znver4), the thread count and the versions of the
    numeric libraries (their float rounding). Loader workers and machine load do not."""
    import numba
    from threadpoolctl import threadpool_info
    pools = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    pools = [pool for pool in pools if "numpy" in pool["filepath"]] or pools      # not OpenCV's own copy
    blas = [f"{pool['internal_api']} {pool['version']} {pool.get('architecture') or ''}".strip() for pool in pools]
    return (f"{cpu_model()}, Numba target {numba_target()}, {', '.join(blas) or 'this BLAS'}, "
            f"{numba.get_num_threads()} threads, numpy {np.__version__}, numba {numba.__version__}")


def cpu_model():
    """The CPU's model name as the system gives it (Linux: /proc/cpuinfo's), else the machine's architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "this CPU"


def numba_target():
    """The CPU that Numba compiles the kernels for: NUMBA_CPU_NAME when it is set, else LLVM's name for this one."""
    import numba
    if numba.config.CPU_NAME:
        return numba.config.CPU_NAME
    from llvmlite import binding
    return binding.get_host_cpu_name()


def _format_eta(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_until_done(run, iterations=None):
    """The loop every trainer shares: iterations until the run is done or interrupted (Ctrl-C only sets a flag, so
    that a step is never cut in half; on several ranks SIGTERM too, which mpiexec sends on Ctrl-C); then the final
    weights. `iterations` caps this call's steps (Python only: a test's short run with the cfg's schedule)."""
    signals = (signal.SIGINT, signal.SIGTERM) if run.sync.size > 1 else (signal.SIGINT,)
    previous = {s: signal.signal(s, run.on_interrupt) for s in signals} if _main_thread() else {}
    try:
        while not run.interrupted and not run.done() and (iterations is None or run.count < iterations):
            run.iteration()
        return run.finish()
    finally:
        run.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


class Training:
    """One training run, step by step: set-up, then per iteration the resize a subclass asks for, the train step,
    the logged line, the backups and the subclass's own step (detector train's -map); then the final weights (or
    the interrupt's backup). Subclasses give `new_loader` and `resize`, and may change the line, the backups and
    the final name; detector/train.py's DetectorTraining and classifier.py's ClassifierTraining are the two."""

    def __init__(self, datacfg, cfgfile, weightfile, clear, seed, max_batches, out, sync=None):
        """Set-up, printing what Darknet prints before its loop: the network, its options and the seed. `sync`
        (parallel/replicas.py) trains on several ranks: rank 0 alone prints and writes files."""
        self.sync = sync or OneProcess()
        self.rank = self.sync.comm.rank
        if self.rank:
            out = open(os.devnull, "w")
        self.datacfg, self.cfgfile, self.weightfile, self.out = datacfg, cfgfile, weightfile, out
        self.options = read_data(datacfg)
        self.read_lists()
        self.backup = self.options.path_of("backup", "backup")
        os.makedirs(self.backup, exist_ok=True)
        self.base = base_name(cfgfile)
        print(self.base, file=out)
        self.seed = self.sync.comm.broadcast_object(int(time.time()) if seed is None else seed)
        # with -seed, the layers the weights file leaves out (a fine-tune's head) start the same every time
        net = self.net = load_network(cfgfile, weightfile, clear, verbose=not self.rank, seed=self.seed)
        if max_batches is not None:
            net.max_batches = max_batches
        self.sync.prepare(net, cfgfile)     # rank 0's weights everywhere; -sync darknet's learning rate x N
        print(f"Learning Rate: {net.learning_rate:g}, Momentum: {net.momentum:g}, Decay: {net.decay:g}", file=out)
        self.imgs = self.sync.step_images(net.batch * net.subdivisions)     # every rank's images of a step
        ranks = f", {self.sync.size} ranks (-sync {self.sync.mode})" if self.sync.size > 1 else ""
        print(f"Seed: {self.seed} (-seed {self.seed} repeats this run byte for byte on {repeat_conditions()}"
              f"{ranks})", file=out)
        self.rng = np.random.default_rng(self.seed)
        self.avg_loss = -1.0
        self.lowest_avg = math.inf      # for the stop message: how far the loss had climbed before it overflowed
        self.count = 0
        self.last_good = None
        self.interrupted = self.requested = False
        self.progress = None
        # what train_detector and train_classifier set before start(): -map_every K, -grad_stats N, -grad_floor,
        # -tracker NAME
        self.map_every, self.grad_stats, self.grad_floor, self.tracker = None, None, 1e-8, None
        self.ended = None       # finish()'s (status, weights) for the tracker
        self.health, self.grad_report = None, None

    def read_lists(self):
        """What a kind of training reads of the .data file before the network is built, so that a mistake there is
        one line before the layer table (detector train's lists and classes; the classifier reads its own first)."""

    def start(self, workers, chart):
        """The loader from the current batch on, what the kind of training checks first, and the chart (resumed
        with the weights)."""
        self.workers = workers
        self.loader = self.new_loader(self.net.w)
        self.before_first_iteration()
        self.start_clock(chart)

    def before_first_iteration(self):
        """What a kind of training checks with its loader before the clock starts (detector train's dataset
        check)."""

    def new_loader(self, size):
        """The loader of this kind of training, for a network size x size, from the current batch on."""
        raise NotImplementedError

    def start_clock(self, chart):
        """The chart and metrics.jsonl (both resumed with the weights' iteration) with -tracker's tracker, and the
        clock images/s and the ETA are counted from; rank 0 alone draws and writes."""
        net = self.net
        self.chart = Chart(chart, net.max_batches, self.base) if chart and not self.rank else None
        if self.chart and net.current_batch() > 0:
            self.chart.resume(net.current_batch())
        folder = os.path.dirname(chart) if chart else self.backup
        self.metrics = None
        if not self.rank:
            params = {"data": self.datacfg, "seed": self.seed}
            if self.weightfile:
                params["weights"] = self.weightfile
            tracker = open_tracker(self.tracker, folder or ".", self.cfgfile, params, net.current_batch()) \
                if self.tracker else None
            self.metrics = Metrics(os.path.join(folder, "metrics.jsonl"), net.current_batch(), tracker)
        if self.grad_stats:
            picture = None if self.rank else os.path.join(folder, "gradients.png")
            self.health = GradientHealth(self.grad_stats, self.grad_floor, picture, self.out)
        self.started, self.start_batch = time.time(), net.current_batch()

    def done(self):
        return self.net.current_batch() >= self.net.max_batches

    def on_interrupt(self, signum, frame):
        """Ctrl-C: in one process the loop stops after this step; on several ranks it is a request that the ranks
        agree on after the step (sync.agree), so that the loop stops at the same iteration on every rank even when
        the signal reaches them on different sides of that agreement."""
        self.requested = True
        if self.sync.size == 1:
            self.interrupted = True

    def iteration(self):
        if self.resizes_now():
            self.resize()
        self.count += 1
        before = self.net.current_batch()
        loss, t0 = self.train_step()
        i = self.log(loss, t0)
        self.back_up(i, before)
        self.after_iteration(i)
        if self.metrics:
            self.metrics.add(self.record)
        if self.chart:
            self.chart.draw(force=i == self.net.max_batches)

    def resizes_now(self):
        """Whether this iteration starts at a new random network size (Darknet's multi-scale training)."""
        return False

    def resize(self):
        raise NotImplementedError

    def after_iteration(self, i):
        """What a kind of training adds after iteration i's backups (detector train's -map)."""

    def train_step(self):
        """Load a batch and train on it; returns the loss and when training started. A NaN loss stops the run."""
        t0 = time.time()
        x, truth = self.loader.next()
        print(f"Loaded: {time.time() - t0:f} seconds", file=self.out)
        t0 = time.time()
        self.sync.before_step(self.net)
        health = self.health if self.health and self.health.due(self.count) else None
        if health:
            health.before_step(self.net)
        loss = train_network(self.net, x, truth)
        loss, self.interrupted = self.sync.agree(self.net, loss, self.requested)
        if not math.isfinite(loss):
            raise TrainingStopped(self.stop_message(loss))
        self.grad_report = health.after_step(self.net, self.net.current_batch()) if health else None
        self.sync.after_step(self.net)
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
        rate, eta = self.speed(i)
        print(f"{i}: {loss:f}, {self.avg_loss:f} avg, {net.current_rate():f} rate, {seconds:f} seconds, "
              f"{i * self.imgs} images, {rate:.1f} images/s, ETA {_format_eta(eta)}", file=self.out, flush=True)
        self.remember(i, loss, rate)
        if self.progress:
            self.progress.iteration(i, net.max_batches, self.avg_loss, rate, eta)
        return i

    def remember(self, i, loss, images_s):
        """Iteration i's point on the chart and its record for metrics.jsonl (what comes after adds to it)."""
        if self.chart:
            self.chart.add(i, loss, self.avg_loss)
        self.record = {"iteration": i, "loss": loss, "avg": self.avg_loss, "rate": self.net.current_rate(),
                       "images_s": images_s, **(self.grad_report or {})}

    def speed(self, i):
        """Images/s of this run so far, and the seconds left to max_batches at the counter's pace (which jumps
        under -sync darknet)."""
        elapsed = max(time.time() - self.started, 1e-9)
        per_step = max(i - self.start_batch, 1) / self.count
        return self.count * self.imgs / elapsed, (self.net.max_batches - i) / per_step * elapsed / self.count

    def back_up(self, i, before=None):
        """The backups due after iteration i (the counter was at `before`), Darknet's save_weights line for each;
        on several ranks after their weights are synced, written by rank 0."""
        names = self.backup_names(i, before)
        if names:
            self.sync.before_save(self.net)
        for name in names:
            print(f"Saving weights to {name}", file=self.out, flush=True)
            self.save(name)
            self.last_good = name

    def save(self, name):
        if not self.rank:
            save_weights(self.net, name)

    def backup_names(self, i, before=None):
        """The files due after iteration i: train_detector's schedule (classifier train has its own)."""
        return backup_names(self.backup, self.base, i, before)

    def finish(self):
        """The final weights; after Ctrl-C, `<cfg>.backup` and TrainingInterrupted."""
        self.sync.before_save(self.net)
        if self.interrupted:
            name = os.path.join(self.backup, f"{self.base}.backup")
            self.save(name)
            self.ended = ("KILLED", name)
            self.sync.comm.barrier()        # no rank's exit 130 ends the job before rank 0 has saved
            print(f"Interrupted at iteration {self.net.current_batch()}: saved {name}", file=self.out, flush=True)
            raise TrainingInterrupted(name)
        final = self.final_name()
        self.save(final)
        self.ended = ("FINISHED", final)
        self.sync.comm.barrier()        # the other ranks may read it next (detector map after training)
        print(f"Saved {final}", file=self.out, flush=True)
        return final

    def final_name(self):
        return os.path.join(self.backup, f"{self.base}_final.weights")

    def close(self):
        self.loader.close()
        if self.metrics:
            self.metrics.close(*(self.ended or ("FAILED", self.last_good)))
        if self.health:
            self.health.draw()
        if self.chart and self.chart.iterations:
            self.chart.draw(force=True)


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def train_network(net, x, truth):
    """Darknet's train_network: the loaded images in chunks of net.batch, one train step each; the mean loss per
    image."""
    total = 0.0
    batch = net.replica_batch
    for start in range(0, x.shape[0], batch):
        total += net.train_datum(x[start:start + batch], truth[start:start + batch])
    return total / x.shape[0]
