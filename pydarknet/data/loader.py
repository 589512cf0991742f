"""Darknet's data.c, its loader: batches of augmented images and their truth, built ahead in threads or processes.

An image that cannot be read is reported and replaced by another random one; Darknet exits.
"""
import collections
import concurrent.futures
import multiprocessing
import os
import threading
import warnings

import numpy as np

from ..errors import DarknetError, ImageError
from ..image import load_image_color

from .augment import check_jitter, classification_sample, detection_sample, region_sample
from .labels import F32, DataWarning, check_kind, class_truth, label_path, parse_boxes, read_list


def _seed_sequence(seed, *key):
    return np.random.SeedSequence(seed, spawn_key=key)


class _Sampler:
    """What one image needs besides its (batch, slot): the paths and the fixed settings. Picklable, for processes."""

    MAX_TRIES = 100

    def __init__(self, paths, kind, classes, max_boxes, side, jitter, hue, saturation, exposure, seed, scale_range,
                 labels=None, crop=None, flip=True):
        self.paths = paths
        self.flip = flip
        self.class_labels, self.crop = labels, crop
        self.kind = kind
        self.classes = classes
        self.max_boxes = max_boxes
        self.side = side
        self.jitter = jitter
        self.hue = hue
        self.saturation = saturation
        self.exposure = exposure
        self.seed = seed
        self.scale_range = scale_range

    def labels(self, path, messages):
        lpath = label_path(path, self.kind)
        if lpath == os.fsdecode(path):
            messages.append(f"{path}: no label-file rule for this extension (Darknet's: .jpg .png .JPG .JPEG; "
                            f"also .jpeg .bmp); the image has no boxes")
            return np.zeros((0, 5), F32)
        boxes, problems = parse_boxes(lpath, self.classes)
        messages.extend(problems)
        return boxes

    def sample(self, batch_index, slot, index, w, h):
        """Image `slot` of batch `batch_index`: (x, truth, messages); its Generator depends on nothing else."""
        rng = np.random.Generator(np.random.PCG64(_seed_sequence(self.seed, batch_index, slot + 1)))
        messages = []
        for _ in range(self.MAX_TRIES):
            path = self.paths[index]
            try:
                im = load_image_color(path)
            except ImageError as e:
                messages.append(f"{e}; another random image is used instead")
                index = int(rng.integers(len(self.paths)))
                continue
            if self.kind == "classification":
                return (classification_sample(im, w, h, self.crop, self.hue, self.saturation, self.exposure, rng),
                        class_truth(path, self.class_labels)[0], messages)
            boxes = self.labels(path, messages)
            if self.kind == "detection":
                x, truth = detection_sample(im, boxes, w, h, self.jitter, self.hue, self.saturation, self.exposure,
                                            rng, self.max_boxes, self.scale_range, self.flip)
            else:
                x, truth = region_sample(im, boxes, w, h, self.jitter, self.hue, self.saturation, self.exposure,
                                         rng, self.classes, self.side, self.flip)
            return x, truth, messages
        raise DarknetError(f"{self.MAX_TRIES} images in a row could not be read, the last {path!r}; "
                           "is the train list right?")


def plain_samples(paths, net_shape, kind, classes, max_boxes=90, side=7, seed=0):
    """Each image of `paths` once, in order, loaded as training loads it but with jitter 0, neutral colour and no
    flip (the validation loss's images): yields (x (3, h, w), truth, problems) per image, image i's placement drawn
    from (seed, i) alone."""
    sampler = _Sampler(paths, kind, classes, max_boxes, side, 0., 0., 1., 1., seed, None, flip=False)
    for i in range(len(paths)):
        yield sampler.sample(0, i, i, *net_shape)


_WORKER_SAMPLER = None


def _init_process(sampler):
    global _WORKER_SAMPLER
    _WORKER_SAMPLER = sampler


def _sample_in_process(batch_index, slot, index, w, h):
    return _WORKER_SAMPLER.sample(batch_index, slot, index, w, h)


class Loader:
    """Darknet's load_threads for training: batches of (X (batch, 3, h, w) float32, truth (batch, truths) float32).

    Each batch picks `batch` random paths with replacement (get_random_paths) and augments each image
    as load_data_detection or load_data_region does. Batch k depends only on (seed, k, the network size
    it was asked for): its paths come from SeedSequence(seed, spawn_key=(k, 0)) and image i's draws from
    spawn_key=(k, i + 1), so the result is the same for any number of workers and any scheduling.

    The next `prefetch` batches are built in the background by `workers` threads (or processes with
    processes=True, for CPU-bound pipelines: the image kernels hold the GIL) while the current one trains.
    `set_size(w, h)` changes the size of every batch not yet handed out (Darknet's random multi-scale:
    batches already loaded at the old size are thrown away, as Darknet frees them). An image that cannot
    be read is reported (DataWarning, once per message) and replaced by another random path. Problems
    found by the workers are warned about from the thread that takes the batch.

    kind="classification" is load_data_augment: `labels` (the class names, found in each path) and `crop` (a Crop)
    instead of label files; truth is one value per class.

    `truths` is max_boxes*5 for "detection" and side*side*(5+classes) for "region". saturation or
    exposure 0 mean 1, as in Darknet's load_thread. `start` is the first batch index (to resume a run).
    `slots` (the indices of the images of each batch this process loads; all by default) is one rank's share of
    the batch on several ranks: the same draws as one process makes for those slots.
    """

    def __init__(self, paths, net_shape, kind="detection", batch=1, classes=1, max_boxes=90, jitter=.2, hue=0.,
                 saturation=1., exposure=1., *, side=7, seed=0, workers=4, prefetch=1, processes=False, start=0,
                 scale_range=None, labels=None, crop=None, slots=None):
        check_kind(kind)
        if kind == "classification" and (labels is None or crop is None):
            raise ValueError("kind classification needs the class labels and a Crop")
        source = os.fsdecode(paths) if isinstance(paths, (str, bytes, os.PathLike)) else None
        paths = [os.fsdecode(p) for p in (read_list(source) if source else paths)]
        if not paths:
            where = f"{source}: " if source else ""
            raise DarknetError(f"{where}no training images: the train list is empty")
        if batch < 1 or workers < 1 or prefetch < 1:
            raise ValueError("batch, workers and prefetch must be >= 1")
        self.kind = kind
        self.images = len(paths)    # in the list (AlexeyAB's train_images_num)
        self.batch = batch
        self.slots = list(range(batch) if slots is None else slots)
        self.classes = classes
        self.side = side
        self.max_boxes = max_boxes
        self.truths = {"detection": max_boxes * 5, "region": side * side * (5 + classes),
                       "classification": classes}[kind]
        self.seed = seed
        self.prefetch = prefetch
        self.w, self.h = self._size(*net_shape)
        check_jitter(jitter, 1 if kind == "detection" else .5)
        self._sampler = _Sampler(paths, kind, classes, max_boxes, side, jitter, hue, saturation or 1.,
                                 exposure or 1., seed, scale_range, labels, crop)
        if processes:
            context = multiprocessing.get_context("spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_process,
                                                                initargs=(self._sampler,))
            self._submit_image = lambda *job: self._pool.submit(_sample_in_process, *job)
        else:
            self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="pydarknet-data")
            self._submit_image = lambda *job: self._pool.submit(self._sampler.sample, *job)
        self._lock = threading.Lock()
        self._next = start                  # the index of the batch next() hands out
        self._pending = collections.deque()   # (k, w, h, [futures]) for the next `prefetch` batches
        self._reported = set()
        self._closed = False
        self._fill()

    @staticmethod
    def _size(w, h):
        w, h = int(w), int(h)
        if w < 1 or h < 1:
            raise ValueError(f"network size must be positive, got {w}x{h}")
        return w, h

    @property
    def batch_index(self):
        """The index of the batch the next call to next() returns."""
        return self._next

    def _paths_for(self, k):
        rng = np.random.Generator(np.random.PCG64(_seed_sequence(self.seed, k, 0)))
        return rng.integers(len(self._sampler.paths), size=self.batch)

    def _submit(self, k):
        indices = self._paths_for(k)
        futures = [self._submit_image(k, slot, int(indices[slot]), self.w, self.h) for slot in self.slots]
        self._pending.append((k, self.w, self.h, futures))

    def _fill(self):
        k = self._pending[-1][0] + 1 if self._pending else self._next
        while len(self._pending) < self.prefetch:
            self._submit(k)
            k += 1

    def _discard(self):
        while self._pending:
            for future in self._pending.popleft()[3]:
                future.cancel()

    def set_size(self, w, h):
        """Make every batch not yet handed out w x h; batches prefetched at another size are rebuilt."""
        with self._lock:
            self._ensure_open()
            w, h = self._size(w, h)
            if (w, h) == (self.w, self.h):
                return
            self.w, self.h = w, h
            self._discard()
            self._fill()

    def next(self):
        """The next batch: (X (batch, 3, h, w) float32, truth (batch, truths) float32)."""
        with self._lock:
            self._ensure_open()
            if not self._pending:
                self._fill()
            k, w, h, futures = self._pending.popleft()
            self._next = k + 1
            self._fill()                    # start the following batches before waiting on this one
        X = np.empty((len(self.slots), 3, h, w), F32)
        truth = np.empty((len(self.slots), self.truths), F32)
        messages = []
        for slot, future in enumerate(futures):
            x, t, problems = future.result()
            X[slot] = x
            truth[slot] = t
            messages.extend(problems)
        for message in messages:
            if message not in self._reported:
                self._reported.add(message)
                warnings.warn(message, DataWarning, stacklevel=2)
        return X, truth

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def _ensure_open(self):
        if self._closed:
            raise DarknetError("the data loader is closed")

    def close(self):
        """Stop the workers; batches not handed out are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._discard()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not self._closed:
                self._pool.shutdown(wait=False, cancel_futures=True)
        except Exception:   # noqa: BLE001  interpreter shutdown: nothing left to release
            pass
