"""`classifier train|valid|predict|label`: pjreddie's examples/classifier.c.

    pydarknet classifier train DATA CFG [WEIGHTS] [-clear] [-seed S] [-max_batches N]
    pydarknet classifier valid DATA CFG WEIGHTS          (top-1 and top-k on the `valid` list)
    pydarknet classifier predict DATA CFG WEIGHTS [IMG] [-t K]
    pydarknet classifier label DATA CFG WEIGHTS          (the top class of each image of the `test` list)

The .data keys are Darknet's: classes, train, valid, test, labels, names, top, backup. An image's class is the
label that occurs in its path (strstr over the whole path, as Darknet); a path that names none, or more than one,
gets Darknet's "Too many or too few labels" line and is counted. Training is detector train's loop (the same
Ctrl-C backup, NaN stop and chart) with Darknet's classifier augmentation, progress line and backups:
`<cfg>_<epoch>.weights` each epoch, `<cfg>.backup` every 1,000 batches, `<cfg>.weights` at the end.
"""
import os
import sys
import time

import numpy as np

from .cfg import read_data, read_names
from .data.labels import class_truth, labels_message, read_list
from .data.augment import Crop
from .data.loader import Loader
from .backend import to_host
from .network import load_network
from .parallel.comm import world
from .parallel.shard import by_shares
from .errors import DarknetError
from .image import center_crop_image, crop_image, letterbox_image, load_image_color, resize_min
from .trackers import require
from .trainer import Training, run_until_done

SHOWN_LABEL_PROBLEMS = 10       # "Too many or too few labels" lines printed before the count


def top_k(values, k):
    """utils.c top_k: the indices of the k largest values, largest first (the earlier index wins a tie)."""
    index = [-1] * k
    for i in range(len(values)):
        current = i
        for j in range(k):
            if index[j] < 0 or values[current] > values[index[j]]:
                current, index[j] = index[j], current
    return index


def class_of(path, labels):
    """validate_classifier's class of an image: the first label that occurs in its path, -1 if none does."""
    return next((j for j, label in enumerate(labels) if label in path), -1)


def output_layer(net):
    """get_network_output_layer: the last layer that is not [cost]."""
    return next(layer for layer in reversed(net.layers) if layer.type != "cost")


def predictions(net, images):
    """The network's output for each image (C, H, W), net.batch images a pass."""
    out, step = [], max(net.batch, 1)
    for start in range(0, len(images), step):
        batch = np.stack(images[start:start + step])
        net.predict(batch)
        out.extend(np.asarray(output_layer(net).output).reshape(len(batch), -1).copy())
    return out


class DataOptions:
    """What a classifier .data file says, with Darknet's defaults."""

    def __init__(self, datacfg):
        self.options = options = read_data(datacfg)
        self.path = datacfg
        self.classes = options.int("classes", 2)
        self.top = options.int("top", 1)

    @property
    def names_file(self):
        """names=, else labels= (predict_classifier's rule)."""
        return self.options.file_of("names" if self.options.get("names") else "labels", "data/labels.list")

    def labels(self):
        labels_file = self.options.file_of("labels", "data/labels.list")
        labels = read_names(labels_file)
        if len(labels) < self.classes:
            raise DarknetError(f"{self.path}: classes={self.classes}, but {labels_file} has {len(labels)} labels")
        return labels[:self.classes]

    def image_list(self, key, default="data/train.list"):
        path = self.options.file_of(key, default)
        paths = read_list(path)
        if not paths:
            raise DarknetError(f"{path}: the {key} list is empty")
        return path, paths


def label_problems(list_path, paths, labels):
    """fill_truth's "Too many or too few labels" line for each path that names no label or several; a list in
    which no path names exactly one label is refused."""
    problems = [message for message in (labels_message(class_truth(p, labels)[1], p, len(labels)) for p in paths)
                if message]
    if len(problems) == len(paths) and len(labels) > 1:
        raise DarknetError(f"{list_path}: no image path names exactly one of the labels ({', '.join(labels)}): "
                           f"the class of an image is the label its path contains")
    return problems


def report_label_problems(list_path, paths, problems, out):
    """The first few problems as Darknet prints them, then how many there are."""
    for message in problems[:SHOWN_LABEL_PROBLEMS]:
        print(message, file=out)
    if problems:
        more = len(problems) - SHOWN_LABEL_PROBLEMS
        print(f"{len(problems)} of {len(paths)} images in {list_path} have too many or too few labels"
              + (f" ({more} more not shown)" if more > 0 else ""), file=out, flush=True)


class ClassifierTraining(Training):
    """train_classifier: detector train's run with the classification loader, its line, backups and resizing."""

    def __init__(self, datacfg, cfgfile, weightfile, clear, seed, max_batches, out, sync=None):
        self.data = DataOptions(datacfg)        # the lists first: a bad one is one line, before the layer table
        self.labels = self.data.labels()
        train_list, self.paths = self.data.image_list("train")
        problems = label_problems(train_list, self.paths, self.labels)
        super().__init__(datacfg, cfgfile, weightfile, clear, seed, max_batches, out, sync)
        print(len(self.paths), file=self.out)
        report_label_problems(train_list, self.paths, problems, self.out)
        self.epoch = self.net.seen // len(self.paths)
        print(*self.crop_sizes(self.net.w), file=self.out)

    def before_first_iteration(self):
        """With -map_every, the valid list (a missing or empty one is one line now, not at the first report)."""
        if self.map_every:
            self.valid_paths = self.data.image_list("valid")[1]
            self.next_check = self.net.current_batch() + self.map_every

    def after_iteration(self, i):
        """-map_every: the validation loss and top-1 every K iterations and at the last."""
        if not self.map_every or (i < self.next_check and i != self.net.max_batches):
            return
        self.next_check = i + self.map_every
        loss, top1 = classifier_validation(self.net, self.valid_paths, self.labels, self.data.classes)
        print(f"validation loss: {loss:f}, top-1: {top1:f} on {len(self.valid_paths)} images", file=self.out,
              flush=True)
        self.record.update(validation_loss=loss, top1=top1)
        if self.chart:
            self.chart.add_validation(i, loss)

    def crop_sizes(self, size):
        """args.min, args.max: the random crop's side, min_ratio and max_ratio of the size (int in C)."""
        net = self.net
        return int(np.float32(net.min_ratio) * size), int(np.float32(net.max_ratio) * size)

    def new_loader(self, size):
        net = self.net
        crop = Crop(*self.crop_sizes(size), angle=net.angle, aspect=net.aspect, center=net.center)
        images, slots = self.sync.loader_batch(net.batch * net.subdivisions)
        return Loader(self.paths, (size, size), kind="classification", batch=images, classes=self.data.classes,
                      labels=self.labels, crop=crop, hue=net.hue, saturation=net.saturation, exposure=net.exposure,
                      seed=self.seed, workers=self.workers, start=net.current_batch(), slots=slots)

    def done(self):
        return self.net.max_batches != 0 and self.net.current_batch() >= self.net.max_batches

    def resizes_now(self):
        return self.net.random and self.count % 40 == 0

    def resize(self):
        """Darknet's random sizes for classifiers: 128..448 in steps of 32, the crop sizes scaled with it."""
        dim = self.sync.comm.broadcast_object((int(self.rng.integers(11)) + 4) * 32)   # rank 0's draw
        print(f"Resizing\n{dim}", file=self.out)
        print(*self.crop_sizes(dim), file=self.out)
        self.loader.close()
        self.loader = self.new_loader(dim)
        self.net.resize(dim, dim)

    def log(self, loss, t0):
        """train_classifier's line, `batch, epoch: loss, avg avg, rate rate, t seconds, images images`, then
        images/s and an ETA."""
        net = self.net
        self.average(loss)
        i = net.current_batch()
        rate, seconds_left = self.speed(i)
        eta = f", ETA {seconds_left:.0f} s" if net.max_batches else ""
        print(f"{i}, {net.seen / len(self.paths):.3f}: {loss:f}, {self.avg_loss:f} avg, {net.current_rate():f} "
              f"rate, {time.time() - t0:f} seconds, {net.seen} images, {rate:.1f} images/s{eta}", file=self.out,
              flush=True)
        self.remember(i, loss, rate)
        return i

    def backup_names(self, i, before=None):
        """train_classifier's: `<cfg>_<epoch>.weights` when an epoch ends, `<cfg>.backup` every 1,000 batches (or
        when the counter crosses a multiple of 1,000, where it jumps)."""
        names = []
        if self.net.seen // len(self.paths) > self.epoch:
            self.epoch = self.net.seen // len(self.paths)
            names.append(os.path.join(self.backup, f"{self.base}_{self.epoch}.weights"))
        if (i - 1 if before is None else before) // 1000 < i // 1000:
            names.append(os.path.join(self.backup, f"{self.base}.backup"))
        return names

    def final_name(self):
        return os.path.join(self.backup, f"{self.base}.weights")


def train_classifier(datacfg, cfgfile, weightfile=None, clear=False, seed=None, workers=4, max_batches=None,
                     chart="chart.png", out=None, sync=None, iterations=None, map_every=None, grad_stats=None,
                     grad_floor=1e-8, tracker=None):
    """Train as Darknet's train_classifier does; returns the path of the final weights. `sync` and `iterations`:
    train_detector's; `map_every` K: the validation loss and top-1 on the valid list every K iterations (and at
    the last), printed, charted and in metrics.jsonl; `grad_stats`, `grad_floor`, `tracker`: train_detector's."""
    if tracker:
        require(tracker)
    run = ClassifierTraining(datacfg, cfgfile, weightfile, clear, seed, max_batches, out or sys.stdout, sync)
    run.map_every, run.grad_stats, run.grad_floor, run.tracker = map_every, grad_stats, grad_floor, tracker
    run.start(workers, chart)
    return run_until_done(run, iterations)


def classifier_validation(net, paths, labels, classes):
    """The loss per image and the top-1 accuracy on `paths`, each centre-cropped to the cfg's size as
    validate_classifier takes it, in inference mode (Network.validation_cost: rolling statistics, no dropout,
    nothing updated)."""
    total, hits = 0.0, 0
    with net.at_size(*net.cfg_size):
        for start in range(0, len(paths), net.batch):
            chunk = paths[start:start + net.batch]
            x = np.stack([center_crop_image(load_image_color(p), net.w, net.h) for p in chunk])
            total += net.validation_cost(x, np.stack([class_truth(p, labels)[0] for p in chunk])) or 0.0
            out = to_host(output_layer(net).output).reshape(len(chunk), -1)
            hits += sum(int(np.argmax(o[:classes])) == class_of(p, labels) for o, p in zip(out, chunk))
    return total / len(paths), hits / len(paths)


def validate_classifier(datacfg, cfgfile, weightfile, out=None, comm=None):
    """validate_classifier_single: each image of the valid list centre-cropped to the network's size; prints
    Darknet's two lines per image and returns (top-1, top-k) accuracy, k = the .data file's `top`.
    comm: the ranks that share the list (default parallel.comm.world()): each runs its share, rank 0 prints the
    lines one process prints, every rank returns the accuracies."""
    out = out or sys.stdout
    comm = comm or world()
    data = DataOptions(datacfg)
    labels = data.labels()
    _, paths = data.image_list("valid")
    net = load_network(cfgfile, weightfile, complete=True)
    hits = top_hits = 0
    for i, (path, (indexes, first, second)) in enumerate(
            zip(paths, by_shares(comm, paths, lambda part: _valid_outputs(net, part, data)))):
        truth = class_of(path, labels)
        hits += indexes[0] == truth
        top_hits += truth in indexes
        print(f"{path}, {truth}, {first:f}, {second:f}, ", file=out)
        print(f"{i}: top 1: {hits / (i + 1):f}, top {data.top}: {top_hits / (i + 1):f}", file=out)
    return comm.broadcast_object((hits / len(paths), top_hits / len(paths)))


def _valid_outputs(net, paths, data):
    """For each image (64 loaded at a time): the top-k classes of its output, its first two outputs."""
    for start in range(0, len(paths), 64):
        images = [center_crop_image(load_image_color(p), net.w, net.h) for p in paths[start:start + 64]]
        for pred in predictions(net, images):
            yield top_k(pred[:data.classes], data.top), pred[0], pred[1] if pred.size > 1 else 0.0


def predict_classifier(datacfg, cfgfile, weightfile, filename, top=0, out=None):
    """predict_classifier: the image letterboxed to the network's size; prints `%5.2f%%: name` for the `top`
    best classes (-t, else the .data file's `top`). Without a file name it reads paths from standard input."""
    from .image import image_paths
    out = out or sys.stdout
    data = DataOptions(datacfg)
    names = read_names(data.names_file)
    top = top or data.top
    net = load_network(cfgfile, weightfile, complete=True)
    outputs = output_layer(net).outputs
    if not 0 < top <= min(outputs, len(names)):
        raise DarknetError(f"-t {top}: the network has {outputs} outputs and {data.names_file} {len(names)} names")
    for path in image_paths(filename, prompt=True):
        im = load_image_color(path)
        t0 = time.perf_counter()
        pred = predictions(net, [letterbox_image(im, net.w, net.h)])[0]
        print(f"{path}: Predicted in {time.perf_counter() - t0:f} seconds.", file=sys.stderr)
        for index in top_k(pred, top):
            print(f"{pred[index] * 100:5.2f}%: {names[index]}", file=out)
    return 0


def label_classifier(datacfg, cfgfile, weightfile, out=None):
    """label_classifier: each image of the test list resized to the network's size on its shorter side and
    centre-cropped; prints the best class's name."""
    out = out or sys.stdout
    data = DataOptions(datacfg)
    names = read_names(data.options.file_of("names", "data/labels.list"))
    _, paths = data.image_list("test")
    net = load_network(cfgfile, weightfile, complete=True)
    for start in range(0, len(paths), 64):
        images = []
        for path in paths[start:start + 64]:
            resized = resize_min(load_image_color(path), net.w)
            images.append(crop_image(resized, (resized.shape[2] - net.w) // 2, (resized.shape[1] - net.h) // 2,
                                     net.w, net.h))
        for pred in predictions(net, images):
            print(names[int(np.argmax(pred[:data.classes]))], file=out)
    return 0
