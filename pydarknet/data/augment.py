"""Darknet's data.c, its augmentation side: the random draws and what they do to an image and its truth.

Two kinds of detection data, as Darknet's `load_args.type`:

* "detection" (DETECTION_DATA, `detector train` for [yolo] and [region]): `load_data_detection`. The image
  is scaled to a jittered aspect ratio and placed at a random offset on a 0.5-grey canvas of the network
  size, colour-jittered, maybe mirrored. Truth: max_boxes records (x, y, w, h, class) per image.
* "region" (REGION_DATA, `yolo train` for v1's [detection]): `load_data_region`. The image is cropped
  with random margins (which may lie outside it), resized to the network size, maybe mirrored,
  colour-jittered. Truth: a side x side grid of [1, one-hot class, x, y, w, h] cells.
The classifier's (load_data_augment): a random crop, scale, angle and aspect, a flip, colour distortion.

Every random number is drawn from a numpy `Generator` in one place per kind (`draw_detection_aug`,
`draw_region_aug`); applying the drawn numbers (`apply_detection_aug`, `apply_region_aug`) is a pure
function, so a test can fix the numbers and check the result by hand. The arithmetic follows Darknet's
float32 C, operation for operation. Darknet's random stream (C `rand()`) is not reproduced, only what
it does with the numbers.

A box with x == 0 and y == 0 in the label file is dropped; Darknet's correct_boxes turns it into a
999999-sized box that indexes outside the [yolo] grid.
"""
import dataclasses
import math

import numpy as np

from ..image import (center_crop_image, crop_image, distort_image, fill_image, flip_image, make_image, place_image,
                     resize_image, rotate_crop_image)

from .labels import F32


def rand_uniform(u, lo, hi):
    """utils.c rand_uniform given u = (float)rand()/RAND_MAX in [0, 1]: swap if hi < lo, then u*(hi-lo)+lo in
    float32."""
    lo, hi = F32(lo), F32(hi)
    if hi < lo:
        lo, hi = hi, lo
    return F32(F32(u) * (hi - lo)) + lo


def rand_scale(u, coin, s):
    """utils.c rand_scale: scale = rand_uniform(1, s); the scale if rand()%2 (coin) else 1./scale (a double
    division)."""
    scale = rand_uniform(u, 1, s)
    return scale if coin else F32(1.0 / float(scale))


def _u(rng):
    """One (float)rand()/RAND_MAX."""
    return F32(rng.random())


def _coin(rng):
    """One rand()%2."""
    return bool(rng.integers(2))


def draw_distort(rng, hue, saturation, exposure):
    """random_distort_image's draws: (dhue, dsat, dexp) = rand_uniform(-hue, hue), rand_scale(saturation),
    rand_scale(exposure)."""
    dhue = rand_uniform(_u(rng), -F32(hue), F32(hue))
    dsat = rand_scale(_u(rng), _coin(rng), saturation)
    dexp = rand_scale(_u(rng), _coin(rng), exposure)
    return dhue, dsat, dexp


def draw_swaps(rng, n):
    """randomize_boxes's draws: for each i, the index rand()%n it swaps with."""
    return tuple(int(v) for v in rng.integers(n, size=n)) if n else ()


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


def check_jitter(jitter, limit):
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
    check_jitter(jitter, 1)
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


def detection_sample(im, boxes, w, h, jitter, hue, saturation, exposure, rng, max_boxes=90, scale_range=None,
                     flip=True):
    """One image of load_data_detection: draw (draw_detection_aug), then apply (apply_detection_aug); flip=False
    keeps every image unmirrored (the draw still happens, so the other draws stay as they are)."""
    aug = draw_detection_aug(rng, im.shape[2], im.shape[1], w, h, jitter, hue, saturation, exposure, len(boxes),
                             scale_range)
    return apply_detection_aug(im, boxes, w, h, aug if flip else dataclasses.replace(aug, flip=False), max_boxes)


@dataclasses.dataclass(frozen=True)
class RegionAug:
    """The numbers load_data_region draws for one image: crop margins in pixels (negative = outside), flip, colour,
    swaps."""
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
    check_jitter(jitter, .5)
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


def region_sample(im, boxes, w, h, jitter, hue, saturation, exposure, rng, classes, side, flip=True):
    """One image of load_data_region: draw (draw_region_aug), then apply (apply_region_aug); flip as in
    detection_sample."""
    aug = draw_region_aug(rng, im.shape[2], im.shape[1], jitter, hue, saturation, exposure, len(boxes))
    return apply_region_aug(im, boxes, w, h, aug if flip else dataclasses.replace(aug, flip=False), classes, side)


@dataclasses.dataclass(frozen=True)
class Crop:
    """The classifier's augmentation settings from [net]: crop sizes min..max (min_ratio*w, max_ratio*w), angle,
    aspect, and center (a centred crop instead of the random one)."""
    min: int
    max: int
    angle: float = 0.
    aspect: float = 1.
    center: int = 0


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
