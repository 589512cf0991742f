"""`detector train`: Darknet's train_detector on the shared loop (trainer.py): the detection loader, `random=1`'s
multi-scale resizing, `-map` every few epochs and the `dataset check -fast` before the first iteration."""
import contextlib
import io
import itertools
import os
import sys
import warnings

import numpy as np

from ..data.check import check_lists, classes_mismatch, summary
from ..data.labels import DataWarning, read_list
from ..errors import DarknetError
from ..data.loader import Loader, plain_samples
from ..trackers import require
from ..trainer import Training, run_until_done
from .map import detector_map


def head_layer(net):
    """The layer whose settings drive the data (Darknet takes net->layers[net->n - 1])."""
    return net.layers[-1]


def next_map_at(last, images, batch, burn_in, every=None):
    """The iteration of -map's next evaluation after the one at `last` (or the run's start), as AlexeyAB schedules
    it: every 4 epochs of `images` in batches of `batch`, at least 100 iterations apart, not before burn_in (and,
    in the loop, at the last iteration too). The shapes demo: 1,600 images in 16s, every 400 iterations.
    `every` (-map_every K): every K iterations instead."""
    if every:
        return last + every
    return max(last + max(4 * images // batch, 100), burn_in)


def make_loader(net, paths, seed, workers, start=0, batch=None, slots=None):
    """Darknet's load_args for the network: DETECTION_DATA for yolo/region heads, REGION_DATA for v1's grid.
    `batch` images are drawn a step (the cfg's batch x subdivisions), of which this process loads `slots`."""
    head = head_layer(net)
    v1 = head.type == "detection"
    return Loader(paths, (net.w, net.h), kind="region" if v1 else "detection",
                  batch=batch or net.batch * net.subdivisions, slots=slots,
                  classes=head.classes, max_boxes=getattr(head, "max_boxes", 90), jitter=head.jitter, hue=net.hue,
                  saturation=net.saturation, exposure=net.exposure, side=getattr(head, "side", 7), seed=seed,
                  workers=workers, start=start)


def train_detector(datacfg, cfgfile, weightfile=None, clear=False, calc_map=False, seed=None, workers=4,
                   max_batches=None, chart="chart.png", out=None, progress=None, sync=None, iterations=None,
                   map_every=None, grad_stats=None, grad_floor=1e-8, tracker=None):
    """Train as Darknet's train_detector does; returns the path of the final weights.

    Per iteration it prints Darknet's line (`N: loss, avg avg, rate rate, t seconds, images images`) followed by
    images/s and an ETA. Backups go to the .data file's `backup` folder as Darknet names and schedules them, each
    written atomically. Ctrl-C saves `<cfg>.backup` and raises TrainingInterrupted (a KeyboardInterrupt); a NaN or
    infinite loss stops training with a message, keeping the last good backup. `max_batches` overrides the cfg's
    (for short runs and tests). chart.png and its sidecar chart.json cover the whole run across resumes.
    `progress`, when given, hears of each iteration (`iteration(i, max_batches, avg_loss, images_s, eta_s)`) and
    each mAP (`mean_ap(i, value)`), for a caller that shows its own progress (make demo's one line).
    `sync` (parallel/replicas.py, from `sync_for`) trains on several MPI ranks; `iterations` caps the steps of
    this call (Python only: a short run on the cfg's schedule). `map_every` K: -map every K iterations (and at the
    last) instead of AlexeyAB's schedule; it implies calc_map. `grad_stats` N: gradients.py's report every N
    iterations (`grad_floor`: its vanishing threshold). `tracker` "tensorboard" or "mlflow": metrics.jsonl's
    numbers, the cfg and the final weights' path logged there too (trackers.py; its package is checked first).
    """
    if tracker:
        require(tracker)
    run = DetectorTraining(datacfg, cfgfile, weightfile, clear, seed, max_batches, out or sys.stdout,
                           calc_map or bool(map_every), sync)
    run.map_every, run.grad_stats, run.grad_floor, run.tracker = map_every, grad_stats, grad_floor, tracker
    run.progress = progress
    run.start(workers, chart)
    return run_until_done(run, iterations)


class DetectorTraining(Training):
    """One train_detector run on the shared loop: the detection loader, the multi-scale resize of `random=1`, the
    dataset check before the first iteration, and with -map the mAP every few epochs."""

    def __init__(self, datacfg, cfgfile, weightfile, clear, seed, max_batches, out, calc_map=False, sync=None):
        self.calc_map = calc_map
        super().__init__(datacfg, cfgfile, weightfile, clear, seed, max_batches, out, sync)
        self.head = head_layer(self.net)

    def read_lists(self):
        """The train list (with -map the valid list and the names) and the cfg's classes against the .data file's,
        before the network is built: a missing key, an empty list or a class-count mismatch is one line."""
        options = self.options
        self.train_list = options.file_of("train", "data/train.list")
        self.paths = read_list(self.train_list)
        if not self.paths:
            raise DarknetError(f"{self.train_list}: no training images: the train list is empty")
        if self.calc_map:
            if "valid" in options:          # without valid=, -map measures the train list
                read_list(options.file_of("valid", "data/train.txt"))
            options.file_of("names", "data/names.list")
        options.int("classes")          # the dataset check before the first iteration reads labels by it
        mismatch = classes_mismatch(options, self.cfgfile)
        if mismatch:
            raise DarknetError(f"{': '.join(mismatch)}; training needs the two to agree (and the filters= before "
                               f"each head to follow from them)")

    def before_first_iteration(self):
        """The dataset check, and -map's first iteration."""
        net = self.net
        if not self.rank:
            self.check_dataset()
        self.sync.comm.barrier()       # the other ranks wait for rank 0's check
        self.next_map = next_map_at(net.current_batch(), self.loader.images, self.imgs, net.burn_in, self.map_every)
        if self.calc_map and not self.options.get("valid"):
            warnings.warn(f"{self.datacfg}: no valid= list, so -map measures mAP on the training list "
                          f"{self.train_list} (as Darknet does)", DataWarning, stacklevel=4)

    def new_loader(self, size):
        net = self.net
        images, slots = self.sync.loader_batch(net.batch * net.subdivisions)
        return make_loader(net, self.paths, self.seed, self.workers, net.current_batch(), images, slots)

    def valid_paths(self):
        """-map's images: the valid list, else (as Darknet) the training list."""
        valid = self.options.get("valid")
        return read_list(self.options.file_of("valid", "data/train.txt")) if valid else self.paths

    def check_dataset(self):
        """`dataset check -fast` on the lists it uses before the first iteration: how many problems and where they
        are listed (training goes on, as Darknet's does, skipping what the loader cannot use)."""
        valid = self.calc_map and os.path.exists(self.options.path_of("valid", ""))
        keys = ("train", "valid") if valid else ("train",)
        problems = check_lists(self.datacfg, self.cfgfile, fast=True, out=None, progress=False, keys=keys)
        print(f"dataset check -fast: {summary(problems, fast=False)}", file=self.out, flush=True)

    def resizes_now(self):
        return getattr(self.head, "random", 0) and self.count % 10 == 0

    def resize(self):
        """Darknet's multi-scale training: a new square size, 320..608 in steps of 32 (608 near the end)."""
        dim = (int(self.rng.integers(10)) + 10) * 32
        if self.net.current_batch() + 200 > self.net.max_batches:
            dim = 608
        dim = self.sync.comm.broadcast_object(dim)      # rank 0's draw, on every rank
        print(f"Resizing\n{dim}", file=self.out)
        self.loader.set_size(dim, dim)
        self.net.resize(dim, dim)

    def after_iteration(self, i):
        """-map: at the scheduled iterations and the last one."""
        if self.calc_map and (i >= self.next_map or i == self.net.max_batches):
            self.next_map = next_map_at(i, self.loader.images, self.imgs, self.net.burn_in, self.map_every)
            self.measure_map(i)

    def measure_map(self, i):
        """mAP@0.5 and the validation loss (each rank computes that one whole for now), on the chart and in
        metrics.jsonl."""
        self.sync.before_save(self.net)         # the weights synced first, as before a save
        with self.sync.evaluated(self.net):
            report = map_report(self.datacfg, self.net, self.sync.comm)
            value = report["map"]
            paths = self.valid_paths()
            loss = validation_loss(self.net, paths, self.seed)
        print(f"validation loss: {loss:f} on {len(paths)} images", file=self.out, flush=True)
        self.record.update(map=value, map_coco=report["coco_map"], validation_loss=loss)
        if self.chart:
            self.chart.add_validation(i, loss)
            self.chart.add_map(i, value)
        if self.progress:
            self.progress.mean_ap(i, value)


def validation_loss(net, paths, seed=0):
    """The loss per image on `paths`, each loaded as training loads it but with jitter 0, neutral colour and no
    flip, at the cfg's width and height (not a random=1 size), in inference mode: rolling statistics, no dropout,
    nothing updated (Network.validation_cost); the heads' Darknet lines are not printed."""
    head = head_layer(net)
    samples = plain_samples(paths, net.cfg_size, "region" if head.type == "detection" else "detection",
                            head.classes, getattr(head, "max_boxes", 90), getattr(head, "side", 7), seed)
    total = 0.0
    with net.at_size(*net.cfg_size), contextlib.redirect_stdout(io.StringIO()):
        while True:
            chunk = list(itertools.islice(samples, net.batch))
            if not chunk:
                break
            total += net.validation_cost(np.stack([x for x, _, _ in chunk]), np.stack([t for _, t, _ in chunk]))
    return total / len(paths)


def evaluate_map(datacfg, net, out, comm=None):
    """mAP@0.5 on the .data file's `valid` list with the network as it is (map_report's "map")."""
    return map_report(datacfg, net, comm)["map"]


def map_report(datacfg, net, comm=None):
    """detector map's dict (mAP@0.5 "map", COCO's mAP@[.5:.95] "coco_map", ...) on the .data file's `valid` list
    with the network as it is (for -map), net.batch images a forward pass: the same detections as one at a time
    (inference treats each image alone), in about 2/3 of the time. comm: the ranks that share the list (default
    parallel.comm.world()); every rank gets the dict."""
    train = net.train
    try:
        return detector_map(datacfg, net=net, batch=net.batch, comm=comm)
    finally:
        net.train = train
