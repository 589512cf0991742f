"""Darknet's data.c for detection training: train lists, label files, augmentation, truth, a batch loader.

Two kinds of data, as Darknet's `load_args.type`:

* "detection" (DETECTION_DATA, `detector train` for [yolo] and [region]): `load_data_detection`. The image
  is scaled to a jittered aspect ratio and placed at a random offset on a 0.5-grey canvas of the network
  size, colour-jittered, maybe mirrored. Truth: max_boxes records (x, y, w, h, class) per image.
* "region" (REGION_DATA, `yolo train` for v1's [detection]): `load_data_region`. The image is cropped
  with random margins (which may lie outside it), resized to the network size, maybe mirrored,
  colour-jittered. Truth: a side x side grid of [1, one-hot class, x, y, w, h] cells.

Every random number is drawn from a numpy `Generator` in one place per kind (`draw_detection_aug`,
`draw_region_aug`); applying the drawn numbers (`apply_detection_aug`, `apply_region_aug`) is a pure
function, so a test can fix the numbers and check the result by hand. The arithmetic follows Darknet's
float32 C, operation for operation. Darknet's random stream (C `rand()`) is not reproduced, only what
it does with the numbers.

Boxes are float32 arrays of shape (n, 5): x, y, w, h, class (centre and size relative to the image),
the order of Darknet's truth records.

Where this module departs from Darknet on purpose (each is a crash or undefined behaviour there):
* A malformed label line is reported (file:line) and skipped; Darknet's fscanf loop silently stops
  reading the file at the first one. A missing label file means no boxes and a warning; Darknet exits.
* A box whose class is negative, or not below `classes` when classes is known, is reported and
  skipped; Darknet writes outside the truth or the layer's outputs.
* A box with x == 0 and y == 0 in the label file is dropped; Darknet's correct_boxes turns it into a
  999999-sized box that indexes outside the [yolo] grid.
* An image that cannot be read is reported and replaced by another random one; Darknet exits.
"""
import collections
import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import threading
import warnings

import numpy as np

from pydarknet.errors import DarknetError, ImageError
from pydarknet.image import (center_crop_image, crop_image, distort_image, fill_image, flip_image, load_image_color,
                             make_image, place_image, resize_image, rotate_crop_image)

F32 = np.float32

LABEL_KINDS = ("detection", "region")           # the kinds whose truth comes from label files
KINDS = LABEL_KINDS + ("classification",)


class DataWarning(UserWarning):
    """A problem in the training data that is skipped over: a bad label line, a missing label file, an unreadable image."""


# ---------------------------------------------------------------- lists and label files

def read_list(path):
    """get_paths: the image paths of a train list, one per line.

    Surrounding whitespace (a Windows '\\r' included) is stripped and blank lines are skipped;
    Darknet keeps both and then fails on them.
    """
    path = os.fsdecode(path)
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DarknetError(f"Couldn't open file: {path} ({e.strerror or e})") from None
    return [line.strip() for line in lines if line.strip()]


def find_replace(s, orig, rep):
    """utils.c find_replace: replace the FIRST occurrence of orig in s (or return s unchanged)."""
    return s.replace(orig, rep, 1)


# fill_truth_detection's substitutions, in Darknet's order. fill_truth_region (REGION_DATA) has no "raw".
_DIRECTORY_RULES = (("images", "labels"), ("JPEGImages", "labels"), ("raw", "labels"))
_EXTENSION_RULES = (".jpg", ".png", ".JPG", ".JPEG")
# AlexeyAB's fork also maps these; they come after Darknet's own, so Darknet's results never change.
_EXTRA_EXTENSIONS = (".jpeg", ".bmp")


def label_path(image_path, kind="detection"):
    """The label file Darknet reads for an image: fill_truth_detection's find_replace chain.

    "images" -> "labels", "JPEGImages" -> "labels", "raw" -> "labels" (not for kind="region", whose
    fill_truth_region lacks it), then ".jpg", ".png", ".JPG", ".JPEG" -> ".txt", and after those
    AlexeyAB's ".jpeg", ".bmp" -> ".txt". Each rule replaces only the FIRST occurrence, anywhere in
    the path, as Darknet's find_replace does ("raw" inside "drawings" too). An extension no rule knows
    is left unchanged, so the result can be the image path itself.
    """
    _check_kind(kind, LABEL_KINDS)
    s = os.fsdecode(image_path)
    for orig, rep in _DIRECTORY_RULES:
        if orig == "raw" and kind == "region":
            continue
        s = find_replace(s, orig, rep)
    for ext in _EXTENSION_RULES + _EXTRA_EXTENSIONS:
        s = find_replace(s, ext, ".txt")
    return s


def parse_boxes(path, classes=None, line_numbers=False):
    """read_boxes's body: (boxes, messages) instead of warnings, so worker threads (and `dataset check`,
    `calc_anchors`) can hand them over; with `line_numbers`, also each box's line in the file."""
    path = os.fsdecode(path)
    messages = []
    try:
        with open(path, encoding="utf-8-sig") as f:     # a byte-order mark is not part of line 1
            lines = f.read().splitlines()
    except FileNotFoundError:
        return _no_boxes(f"Couldn't open label file {path}: no such file; the image has no boxes", line_numbers)
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return _no_boxes(f"Couldn't read label file {path}: {reason}; the image has no boxes", line_numbers)
    rows, numbers = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            messages.append(f"{where}: expected 'class x y w h', got {len(fields)} fields; line skipped")
            continue
        try:
            cls = int(fields[0])
        except ValueError:
            messages.append(f"{where}: class {fields[0]!r} is not an integer; line skipped")
            continue
        try:
            x, y, w, h = (float(v) for v in fields[1:])
        except ValueError:
            messages.append(f"{where}: {' '.join(fields[1:])!r} are not four numbers; line skipped")
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            messages.append(f"{where}: coordinates must be finite numbers; line skipped")
            continue
        if cls < 0 or (classes is not None and cls >= classes):
            limit = f" (classes={classes})" if classes is not None else ""
            messages.append(f"{where}: class {cls} out of range{limit}; line skipped")
            continue
        rows.append((x, y, w, h, cls))
        numbers.append(number)
    # fscanf's %f stores floats: the values are rounded to float32 once, as Darknet holds them.
    boxes = np.array(rows, dtype=F32).reshape(-1, 5)
    return (boxes, messages, numbers) if line_numbers else (boxes, messages)


def _no_boxes(message, line_numbers):
    empty = np.zeros((0, 5), F32)
    return (empty, [message], []) if line_numbers else (empty, [message])


def read_boxes(path, classes=None):
    """read_boxes: a label file's boxes as float32 (n, 5): x, y, w, h, class.

    Lines are `class x y w h` (centre and size relative to the image). A malformed line (not five
    fields, a class that is not an integer or is negative or, when `classes` is given, >= classes,
    coordinates that are not finite numbers) is reported as a DataWarning naming file:line and
    skipped; the other lines are kept. A missing or unreadable file gives no boxes and a warning.
    """
    boxes, messages = parse_boxes(path, classes)
    for message in messages:
        warnings.warn(message, DataWarning, stacklevel=2)
    return boxes


# ---------------------------------------------------------------- Darknet's random helpers

def rand_uniform(u, lo, hi):
    """utils.c rand_uniform given u = (float)rand()/RAND_MAX in [0, 1]: swap if hi < lo, then u*(hi-lo)+lo in float32."""
    lo, hi = F32(lo), F32(hi)
    if hi < lo:
        lo, hi = hi, lo
    return F32(F32(u) * (hi - lo)) + lo


def rand_scale(u, coin, s):
    """utils.c rand_scale: scale = rand_uniform(1, s); the scale if rand()%2 (coin) else 1./scale (a double division)."""
    scale = rand_uniform(u, 1, s)
    return scale if coin else F32(1.0 / float(scale))


def _u(rng):
    """One (float)rand()/RAND_MAX."""
    return F32(rng.random())


def _coin(rng):
    """One rand()%2."""
    return bool(rng.integers(2))


def draw_distort(rng, hue, saturation, exposure):
    """random_distort_image's draws: (dhue, dsat, dexp) = rand_uniform(-hue, hue), rand_scale(saturation), rand_scale(exposure)."""
    dhue = rand_uniform(_u(rng), -F32(hue), F32(hue))
    dsat = rand_scale(_u(rng), _coin(rng), saturation)
    dexp = rand_scale(_u(rng), _coin(rng), exposure)
    return dhue, dsat, dexp


def draw_swaps(rng, n):
    """randomize_boxes's draws: for each i, the index rand()%n it swaps with."""
    return tuple(int(v) for v in rng.integers(n, size=n)) if n else ()


# ---------------------------------------------------------------- box arithmetic (data.c)

def randomize_boxes(boxes, swaps):
    """randomize_boxes: for i in order, swap box i with box swaps[i] (Darknet's shuffle, not Fisher-Yates)."""
    b = np.array(boxes, dtype=F32).reshape(-1, 5)
    for i, j in enumerate(swaps):
        b[[i, j]] = b[[j, i]]
    return b


def correct_boxes(boxes, dx, dy, sx, sy, flip):
    """correct_boxes: edges * s - d, mirrored if flip, clipped to [0, 1]; x, y, w, h recomputed from the edges.

    float32 throughout as in C, except the mirror `1. - edge`, which C computes in double. A box with
    x == 0 and y == 0 (before correction) gets w = h = 0, so the truth fillers drop it: Darknet makes it
    a 999999-sized box instead (see the module note).
    """
    b = np.array(boxes, dtype=F32).reshape(-1, 5)
    x, y, w, h, cls = (b[:, i] for i in range(5))
    two, zero, one = F32(2), F32(0), F32(1)
    dx, dy, sx, sy = F32(dx), F32(dy), F32(sx), F32(sy)
    # read_boxes: left = x - w/2 ..., then correct_boxes: left*sx - dx ...
    left = (x - w / two) * sx - dx
    right = (x + w / two) * sx - dx
    top = (y - h / two) * sy - dy
    bottom = (y + h / two) * sy - dy
    if flip:
        left, right = (1.0 - right.astype(np.float64)).astype(F32), (1.0 - left.astype(np.float64)).astype(F32)
    left, right, top, bottom = (np.clip(v, zero, one) for v in (left, right, top, bottom))
    out = np.empty_like(b)
    out[:, 0] = (left + right) / two
    out[:, 1] = (top + bottom) / two
    out[:, 2] = np.clip(right - left, zero, one)
    out[:, 3] = np.clip(bottom - top, zero, one)
    out[:, 4] = cls
    marked = (x == zero) & (y == zero)
    out[marked, 2:4] = zero
    return out


def detection_truth(boxes, max_boxes):
    """fill_truth_detection's last step, on corrected boxes: (max_boxes*5,) float32 of (x, y, w, h, class).

    Darknet first cuts the list to max_boxes, then skips boxes with w or h < .001 (compared in double),
    moving the later ones up; the rest of the truth stays 0.
    """
    b = np.asarray(boxes, dtype=F32).reshape(-1, 5)
    truth = np.zeros(max_boxes * 5, F32)
    sub = 0
    for i in range(min(len(b), max_boxes)):
        x, y, w, h, cls = b[i]
        if float(w) < .001 or float(h) < .001:
            sub += 1
            continue
        truth[(i - sub) * 5:(i - sub) * 5 + 5] = (x, y, w, h, cls)
    return truth


def region_truth(boxes, classes, side):
    """fill_truth_region's last step, on corrected boxes: the side*side*(5+classes) grid truth, float32.

    For each box with w and h >= .005 (compared in double): col = (int)(x*side), row = (int)(y*side);
    cell col + row*side gets [1, one-hot class, x*side - col, y*side - row, w, h] unless it is already
    taken (the first box wins). float32 arithmetic, as in C.
    """
    b = np.asarray(boxes, dtype=F32).reshape(-1, 5)
    size = 5 + classes
    truth = np.zeros(side * side * size, F32)
    n = F32(side)
    for x, y, w, h, cls in b:
        if float(w) < .005 or float(h) < .005:
            continue
        col = min(int(x * n), side - 1)     # x <= 1, so only x == 1 (w == 0, skipped above) could reach side
        row = min(int(y * n), side - 1)
        index = (col + row * side) * size
        if truth[index]:
            continue
        truth[index] = 1
        if int(cls) < classes:
            truth[index + 1 + int(cls)] = 1
        truth[index + 1 + classes:index + size] = (x * n - F32(col), y * n - F32(row), w, h)
    return truth


# ---------------------------------------------------------------- DETECTION_DATA (load_data_detection)

@dataclasses.dataclass(frozen=True)
class DetectionAug:
    """The numbers load_data_detection draws for one image, as Darknet holds them (float32).

    nw, nh: the size the image is scaled to; dx, dy: where its top-left corner goes on the canvas (both
    may be negative or larger than the canvas); dhue, dsat, dexp: distort_image's arguments; flip:
    mirror left-right; swaps: randomize_boxes's indices.
    """
    nw: float
    nh: float
    dx: float
    dy: float
    dhue: float = 0.0
    dsat: float = 1.0
    dexp: float = 1.0
    flip: bool = False
    swaps: tuple = ()


def _check_jitter(jitter, limit):
    if not 0 <= jitter < limit:
        raise ValueError(f"jitter must be in [0, {limit}), got {jitter}")


def draw_detection_aug(rng, ow, oh, w, h, jitter, hue, saturation, exposure, nboxes, scale_range=None):
    """All of load_data_detection's draws for an ow x oh image and a w x h network, in Darknet's order.

    new_ar = (ow + rand_uniform(-dw, dw)) / (oh + rand_uniform(-dh, dh)) with dw = jitter*ow,
    dh = jitter*oh; scale = 1 (pjreddie's final code: `//float scale = rand_uniform(.25, 2);` is
    commented out; pass scale_range=(.25, 2) for the earlier behaviour); if new_ar < 1: nh = scale*h,
    nw = nh*new_ar, else nw = scale*w, nh = nw/new_ar; dx = rand_uniform(0, w - nw),
    dy = rand_uniform(0, h - nh); then random_distort_image's three draws, flip = rand()%2, and
    randomize_boxes's swaps.
    """
    _check_jitter(jitter, 1)
    dw = F32(jitter) * F32(ow)
    dh = F32(jitter) * F32(oh)
    new_ar = (F32(ow) + rand_uniform(_u(rng), -dw, dw)) / (F32(oh) + rand_uniform(_u(rng), -dh, dh))
    scale = F32(1) if scale_range is None else rand_uniform(_u(rng), *scale_range)
    if new_ar < 1:
        nh = scale * F32(h)
        nw = nh * new_ar
    else:
        nw = scale * F32(w)
        nh = nw / new_ar
    dx = rand_uniform(_u(rng), 0, F32(w) - nw)
    dy = rand_uniform(_u(rng), 0, F32(h) - nh)
    dhue, dsat, dexp = draw_distort(rng, hue, saturation, exposure)
    flip = _coin(rng)
    return DetectionAug(F32(nw), F32(nh), F32(dx), F32(dy), dhue, dsat, dexp, flip, draw_swaps(rng, nboxes))


def apply_detection_aug(im, boxes, w, h, aug, max_boxes=90):
    """load_data_detection for one image with its numbers drawn: (sized (3, h, w) float32, truth (max_boxes*5,)).

    The canvas is w x h filled with 0.5; place_image gets int(nw), int(nh), int(dx), int(dy) (C's
    float-to-int truncation of its int parameters), while the truth uses the float values:
    fill_truth_detection(..., flip, -dx/w, -dy/h, nw/w, nh/h). Colour distortion, then the flip.
    """
    sized = make_image(w, h, im.shape[0])
    fill_image(sized, .5)
    place_image(im, int(aug.nw), int(aug.nh), int(aug.dx), int(aug.dy), sized)
    sized = distort_image(sized, aug.dhue, aug.dsat, aug.dexp, out=sized)
    if aug.flip:
        flip_image(sized)
    fw, fh = F32(w), F32(h)
    b = randomize_boxes(boxes, aug.swaps)
    b = correct_boxes(b, -F32(aug.dx) / fw, -F32(aug.dy) / fh, F32(aug.nw) / fw, F32(aug.nh) / fh, aug.flip)
    return sized, detection_truth(b, max_boxes)


def detection_sample(im, boxes, w, h, jitter, hue, saturation, exposure, rng, max_boxes=90, scale_range=None):
    """One image of load_data_detection: draw (draw_detection_aug), then apply (apply_detection_aug)."""
    aug = draw_detection_aug(rng, im.shape[2], im.shape[1], w, h, jitter, hue, saturation, exposure, len(boxes),
                             scale_range)
    return apply_detection_aug(im, boxes, w, h, aug, max_boxes)


# ---------------------------------------------------------------- REGION_DATA (load_data_region)

@dataclasses.dataclass(frozen=True)
class RegionAug:
    """The numbers load_data_region draws for one image: crop margins in pixels (negative = outside), flip, colour, swaps."""
    pleft: int
    pright: int
    ptop: int
    pbot: int
    flip: bool = False
    dhue: float = 0.0
    dsat: float = 1.0
    dexp: float = 1.0
    swaps: tuple = ()


def draw_region_aug(rng, ow, oh, jitter, hue, saturation, exposure, nboxes):
    """All of load_data_region's draws, in Darknet's order.

    dw = (int)(ow*jitter), dh = (int)(oh*jitter); pleft, pright = (int)rand_uniform(-dw, dw), ptop,
    pbot = (int)rand_uniform(-dh, dh) (truncation toward zero); flip = rand()%2; random_distort_image's
    three draws; randomize_boxes's swaps.
    """
    _check_jitter(jitter, .5)
    dw = int(F32(ow) * F32(jitter))
    dh = int(F32(oh) * F32(jitter))
    pleft = int(rand_uniform(_u(rng), -dw, dw))
    pright = int(rand_uniform(_u(rng), -dw, dw))
    ptop = int(rand_uniform(_u(rng), -dh, dh))
    pbot = int(rand_uniform(_u(rng), -dh, dh))
    flip = _coin(rng)
    dhue, dsat, dexp = draw_distort(rng, hue, saturation, exposure)
    return RegionAug(pleft, pright, ptop, pbot, flip, dhue, dsat, dexp, draw_swaps(rng, nboxes))


def apply_region_aug(im, boxes, w, h, aug, classes, side):
    """load_data_region for one image with its numbers drawn: (sized (3, h, w), truth side*side*(5+classes)).

    swidth = ow - pleft - pright, sheight = oh - ptop - pbot; crop_image (the edge repeats outside the
    image), resize_image to w x h, flip, distort. Truth: fill_truth_region(..., flip, dx, dy, 1./sx, 1./sy)
    with sx = (float)swidth/ow, dx = ((float)pleft/ow)/sx (and the same for y).
    """
    oh, ow = im.shape[1:]
    swidth = ow - aug.pleft - aug.pright
    sheight = oh - aug.ptop - aug.pbot
    sx = F32(swidth) / F32(ow)
    sy = F32(sheight) / F32(oh)
    cropped = crop_image(im, aug.pleft, aug.ptop, swidth, sheight)
    dx = (F32(aug.pleft) / F32(ow)) / sx
    dy = (F32(aug.ptop) / F32(oh)) / sy
    sized = resize_image(cropped, w, h)
    if aug.flip:
        flip_image(sized)
    sized = distort_image(sized, aug.dhue, aug.dsat, aug.dexp, out=sized)
    b = randomize_boxes(boxes, aug.swaps)
    b = correct_boxes(b, dx, dy, F32(1.0 / float(sx)), F32(1.0 / float(sy)), aug.flip)
    return sized, region_truth(b, classes, side)


def region_sample(im, boxes, w, h, jitter, hue, saturation, exposure, rng, classes, side):
    """One image of load_data_region: draw (draw_region_aug), then apply (apply_region_aug)."""
    aug = draw_region_aug(rng, im.shape[2], im.shape[1], jitter, hue, saturation, exposure, len(boxes))
    return apply_region_aug(im, boxes, w, h, aug, classes, side)


# ---------------------------------------------------------------- the batch loader

# ---------------------------------------------------------------- classification (load_data_augment)

@dataclasses.dataclass(frozen=True)
class Crop:
    """The classifier's augmentation settings from [net]: crop sizes min..max (min_ratio*w, max_ratio*w), angle,
    aspect, and center (a centred crop instead of the random one)."""
    min: int
    max: int
    angle: float = 0.
    aspect: float = 1.
    center: int = 0


def class_truth(path, labels):
    """fill_truth: 1 for every label that occurs in the path (strstr), with the number found."""
    truth = np.array([F32(label in path) for label in labels], F32)
    return truth, int(truth.sum())


def labels_message(count, path, classes):
    """fill_truth's complaint, as Darknet prints it: None when the path names exactly one label (or, with a single
    class, none: a yes/no classifier)."""
    if count == 1 or (classes == 1 and count == 0):
        return None
    return f"Too many or too few labels: {count}, {path}"


def draw_augment_args(rng, im_w, im_h, crop, w):
    """random_augment_args' draws, in its order: aspect, crop size, angle, then the shifts (dx, dy); returns
    (rad, scale, dx, dy, aspect)."""
    aspect = rand_scale(_u(rng), _coin(rng), crop.aspect)
    low, high = sorted((crop.min, crop.max))
    r = int(rng.integers(low, high + 1))                    # rand_int
    smaller = int(im_h if im_h < im_w * aspect else im_w * aspect)
    scale = F32(F32(r) / F32(smaller))
    rad = F32(rand_uniform(_u(rng), -crop.angle, crop.angle) * (2 * math.pi) / 360.)
    dx = F32((im_w * scale / aspect - w) / 2.)
    dy = F32((im_h * scale - w) / 2.)             # Darknet's own: w, not h (its crops are square)
    dx = rand_uniform(_u(rng), -dx, dx)
    dy = rand_uniform(_u(rng), -dy, dy)
    return rad, scale, dx, dy, aspect


def classification_sample(im, w, h, crop, hue, saturation, exposure, rng):
    """load_image_augment_paths for one image: the random (or centred) crop, a flip half the time, the colour
    distortion."""
    if crop.center:
        out = center_crop_image(im, w, h)
    else:
        rad, scale, dx, dy, aspect = draw_augment_args(rng, im.shape[2], im.shape[1], crop, w)
        out = rotate_crop_image(im, rad, scale, w, h, dx, dy, aspect)
    if _coin(rng):
        flip_image(out)
    return distort_image(out, *draw_distort(rng, hue, saturation, exposure), out=out)


def _check_kind(kind, kinds=KINDS):
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")


def _seed_sequence(seed, *key):
    return np.random.SeedSequence(seed, spawn_key=key)


class _Sampler:
    """What one image needs besides its (batch, slot): the paths and the fixed settings. Picklable, for processes."""

    MAX_TRIES = 100

    def __init__(self, paths, kind, classes, max_boxes, side, jitter, hue, saturation, exposure, seed, scale_range,
                 labels=None, crop=None):
        self.paths = paths
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
                                            rng, self.max_boxes, self.scale_range)
            else:
                x, truth = region_sample(im, boxes, w, h, self.jitter, self.hue, self.saturation, self.exposure,
                                         rng, self.classes, self.side)
            return x, truth, messages
        raise DarknetError(f"{self.MAX_TRIES} images in a row could not be read, the last {path!r}; "
                           "is the train list right?")


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
    """

    def __init__(self, paths, net_shape, kind="detection", batch=1, classes=1, max_boxes=90, jitter=.2, hue=0.,
                 saturation=1., exposure=1., *, side=7, seed=0, workers=4, prefetch=1, processes=False, start=0,
                 scale_range=None, labels=None, crop=None):
        _check_kind(kind)
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
        self.classes = classes
        self.side = side
        self.max_boxes = max_boxes
        self.truths = {"detection": max_boxes * 5, "region": side * side * (5 + classes),
                       "classification": classes}[kind]
        self.seed = seed
        self.prefetch = prefetch
        self.w, self.h = self._size(*net_shape)
        _check_jitter(jitter, 1 if kind == "detection" else .5)
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
        futures = [self._submit_image(k, slot, int(index), self.w, self.h)
                   for slot, index in enumerate(self._paths_for(k))]
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
        X = np.empty((self.batch, 3, h, w), F32)
        truth = np.empty((self.batch, self.truths), F32)
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
