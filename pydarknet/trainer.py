"""`detector train`: Darknet's train_detector loop, with backups that survive interrupts and a loss chart."""
import json
import math
import os
import signal
import sys
import time
import warnings

import numpy as np

from .cfg import read_data
from .data import DataWarning, Loader
from .detector import load_network
from .errors import DarknetError
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
        tmp = self.history + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"title": self.title, "iterations": self.iterations, "losses": self.losses,
                       "averages": self.averages, "maps": self.maps}, f)
        os.replace(tmp, self.history)

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
        tmp = self.path + ".tmp.png"
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, self.path)


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
                   max_batches=None, chart="chart.png", out=None):
    """Train as Darknet's train_detector does; returns the path of the final weights.

    Per iteration it prints Darknet's line (`N: loss, avg avg, rate rate, t seconds, images images`) followed by
    images/s and an ETA. Backups go to the .data file's `backup` folder as Darknet names and schedules them, each
    written atomically. Ctrl-C saves `<cfg>.backup` and raises TrainingInterrupted (a KeyboardInterrupt); a NaN or
    infinite loss stops training with a message, keeping the last good backup. `max_batches` overrides the cfg's
    (for short runs and tests). chart.png and its sidecar chart.json cover the whole run across resumes.
    """
    out = out or sys.stdout
    options = read_data(datacfg)
    train_list = options.path_of("train", "data/train.list")
    backup = options.path_of("backup", "backup")
    os.makedirs(backup, exist_ok=True)
    base = base_name(cfgfile)
    print(base, file=out)
    net = load_network(cfgfile, weightfile, clear, verbose=True)
    if max_batches is not None:
        net.max_batches = max_batches
    print(f"Learning Rate: {net.learning_rate:g}, Momentum: {net.momentum:g}, Decay: {net.decay:g}", file=out)
    imgs = net.batch * net.subdivisions
    seed = int(time.time()) if seed is None else seed
    print(f"Seed: {seed} (-seed {seed} repeats this run byte for byte on {repeat_conditions()})", file=out)
    if not weightfile:
        net.init_random(seed)       # with -seed, a new network starts from the same weights every time
    rng = np.random.default_rng(seed)
    head = head_layer(net)
    loader = make_loader(net, train_list, seed, workers, start=net.current_batch())
    if calc_map and not options.get("valid"):
        warnings.warn(f"{datacfg}: no valid= list, so -map measures mAP on the training list {train_list} "
                      f"(as Darknet does)", DataWarning, stacklevel=2)
    chart = Chart(chart, net.max_batches, base) if chart else None
    if chart and net.current_batch() > 0:
        chart.resume(net.current_batch())
    avg_loss = -1.0
    count = 0
    started, start_batch = time.time(), net.current_batch()
    last_good = None
    interrupted = False

    def on_interrupt(signum, frame):
        nonlocal interrupted
        interrupted = True

    previous_handler = signal.signal(signal.SIGINT, on_interrupt) if _main_thread() else None
    try:
        while net.current_batch() < net.max_batches and not interrupted:
            if getattr(head, "random", 0) and count % 10 == 0:
                dim = (int(rng.integers(10)) + 10) * 32        # Darknet: 320..608 in steps of 32
                if net.current_batch() + 200 > net.max_batches:
                    dim = 608
                print(f"Resizing\n{dim}", file=out)
                loader.set_size(dim, dim)
                net.resize(dim, dim)
            count += 1
            t0 = time.time()
            x, truth = loader.next()
            print(f"Loaded: {time.time() - t0:f} seconds", file=out)
            t0 = time.time()
            loss = train_network(net, x, truth)
            if not math.isfinite(loss):
                kept = f"; the last good weights are in {last_good}" if last_good else ""
                raise TrainingStopped(f"{cfgfile}: the loss became {loss} at iteration {net.current_batch()}: "
                                      f"training stopped{kept} (lower the learning rate or check the labels)")
            avg_loss = loss if avg_loss < 0 else avg_loss * .9 + loss * .1
            i = net.current_batch()
            seconds = time.time() - t0
            rate = (i - start_batch) * imgs / max(time.time() - started, 1e-9)
            eta = (net.max_batches - i) * imgs / max(rate, 1e-9)
            print(f"{i}: {loss:f}, {avg_loss:f} avg, {net.current_rate():f} rate, {seconds:f} seconds, {i * imgs} "
                  f"images, {rate:.1f} images/s, ETA {_format_eta(eta)}", file=out, flush=True)
            if chart:
                chart.add(i, loss, avg_loss)
            for name in backup_names(backup, base, i):
                save_weights(net, name)
                last_good = name
            if calc_map and (i % 100 == 0 or i == net.max_batches):
                value = evaluate_map(datacfg, net, out)
                if chart and value is not None:
                    chart.add_map(i, value)
            if chart:
                chart.draw(force=i == net.max_batches)
        if interrupted:
            name = os.path.join(backup, f"{base}.backup")
            save_weights(net, name)
            print(f"Interrupted at iteration {net.current_batch()}: saved {name}", file=out, flush=True)
            raise TrainingInterrupted(name)
        final = os.path.join(backup, f"{base}_final.weights")
        save_weights(net, final)
        print(f"Saved {final}", file=out, flush=True)
        return final
    finally:
        loader.close()
        if chart and chart.iterations:
            chart.draw(force=True)
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)


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
    """mAP@0.5 on the .data file's `valid` list with the network as it is (for -map)."""
    try:
        from .evaluate import detector_map
    except ImportError:
        warnings.warn("mAP evaluation is not available in this build")
        return None
    train = net.train
    try:
        return detector_map(datacfg, net=net)["map"]
    finally:
        net.train = train
