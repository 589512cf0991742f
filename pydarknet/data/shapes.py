"""An embedded detection dataset, in Darknet's layout, that a small YOLO learns in minutes on a CPU.

    pydarknet dataset shapes OUTDIR [-n 2000] [-size 160] [-seed 0]

writes
    OUTDIR/images/00000.png ...     coloured shapes on textured backgrounds (PNG: no JPEG decoder differences)
    OUTDIR/labels/00000.txt ...     one `class x y w h` line an object (relative centre and size, Darknet's format)
    OUTDIR/train.txt, valid.txt     absolute image paths, one a line
    OUTDIR/shapes.names             circle square triangle cross ring
    OUTDIR/shapes.data              classes, train, valid, names, backup (OUTDIR/backup), eval=voc; absolute paths

Darknet finds a label by replacing, once each, "images"/"JPEGImages"/"raw" with "labels" and ".jpg"/".png"/...
with ".txt" in the image path (`fill_truth_detection`); `label_path` is that rule, and `generate` refuses an OUTDIR
whose own path would send the rule astray.

Each image is drawn from its own generator, seeded by (seed, index), so image k is the same whatever n is.
An image: a background (random colour, linear gradient, sometimes sine stripes, low-contrast irregular blobs and
lines, pixel noise), then 1-6 objects of 8%-60% of the side, filled with a colour at least CONTRAST (RGB distance)
away from every pixel under and around them. A box is the object's whole drawn extent, clipped to the image.
An object may be covered by later ones by at most 30% of its pixels; one that crosses the border keeps at
least 60% of itself inside. Pixels are drawn without anti-aliasing, then get a bounded noise of +-NOISE.
"""
import concurrent.futures
import functools
import os
from collections import namedtuple

import cv2
import numpy as np

from .labels import label_path

SHAPES = ("circle", "square", "triangle", "cross", "ring")
MIN_SIDE, MAX_SIDE = 0.08, 0.60     # object extent, as a fraction of the image side
MAX_OBJECTS = 6
MAX_OCCLUDED = 0.30                 # most of an object's pixels that later objects may cover
MIN_INSIDE = 0.60                   # least of a border-crossing object's pixels that stay in the image
CONTRAST = 90.0                     # least RGB distance of an object's colour from the pixels around it
NOISE = 6                           # final per-pixel noise, uniform in [-NOISE, NOISE]
TRIES = 15                          # placements tried per object before it is dropped

Shape = namedtuple("Shape", "cls name box colour visible inside")
Shape.__doc__ = """One drawn object: class index and name, box (x0, y0, x1, y1) in pixels with x1, y1 exclusive,
colour as stored in the image (OpenCV's BGR order), visible = fraction of its in-image pixels left uncovered,
inside = fraction of its pixels that fall inside the image."""

Dataset = namedtuple("Dataset", "data names train valid counts")
Dataset.__doc__ = """What generate wrote: .data and .names paths, train and valid image paths, objects per class."""


# ---- drawing ----

def _fill_poly(mask, points):
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_8, 4)


def _fill_circle(mask, centre, radius, value):
    cv2.circle(mask, (round(centre[0] * 16), round(centre[1] * 16)), max(1, round(radius * 16)), value, -1,
               cv2.LINE_8, 4)


def shape_mask(name, side, centre, angle, ratio, mask):
    """Draw shape `name` of extent at most `side` around `centre` into the uint8 `mask` (as 1s).
    angle turns polygons (radians); ratio is the ring's inner radius or the cross's arm width, over the radius."""
    radius = side / 2
    if name == "circle":
        _fill_circle(mask, centre, radius, 1)
    elif name == "ring":
        _fill_circle(mask, centre, radius, 1)
        _fill_circle(mask, centre, radius * ratio, 0)
    else:
        if name == "square":
            corners = angle + np.pi / 4 + np.arange(4) * np.pi / 2
            points = radius * np.stack([np.cos(corners), np.sin(corners)], 1)
        elif name == "triangle":
            corners = angle + np.arange(3) * 2 * np.pi / 3
            points = radius * np.stack([np.cos(corners), np.sin(corners)], 1)
        elif name == "cross":
            r, t = radius, radius * ratio
            points = np.array([(t, r), (t, t), (r, t), (r, -t), (t, -t), (t, -r),
                               (-t, -r), (-t, -t), (-r, -t), (-r, t), (-t, t), (-t, r)])
            c, s = np.cos(angle), np.sin(angle)
            points = points @ np.array([[c, s], [-s, c]])
        else:
            raise ValueError(f"unknown shape '{name}' (known: {', '.join(SHAPES)})")
        _fill_poly(mask, points + centre)
    return mask


@functools.lru_cache(maxsize=4)
def _grid(size):
    return np.mgrid[0:size, 0:size].astype(np.float32) / size


def background(rng, size):
    """A textured float32 BGR background: colour, gradient, maybe stripes, low-contrast blobs and lines, noise."""
    base = rng.uniform(0, 255, 3)
    yy, xx = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    along = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    image = base + (along - along.mean()) * rng.uniform(-60, 60, 3)
    if rng.random() < 0.5:
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.04, 0.25)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period + rng.uniform(0, 2 * np.pi))
        image = image + wave[..., None] * rng.uniform(-25, 25, 3)
    image = image.astype(np.float32)
    for _ in range(rng.integers(0, 8)):    # stretched, lumpy blobs: no class looks like them
        corners = (np.arange(14) + rng.uniform(-0.3, 0.3, 14)) * 2 * np.pi / 14
        radii = size * rng.uniform(0.06, 0.18) * rng.uniform(0.6, 1.4, 14)
        points = radii[:, None] * np.stack([np.cos(corners) * rng.uniform(1.7, 2.8), np.sin(corners)], 1)
        turn = rng.uniform(0, np.pi)
        points = points @ np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
        points += rng.uniform(0, size, 2)
        cv2.fillPoly(image, [np.round(points * 16).astype(np.int32)], (base + rng.uniform(-45, 45, 3)).tolist(),
                     cv2.LINE_8, 4)
    for _ in range(rng.integers(0, 4)):
        ends = np.round(rng.uniform(0, size, 4)).astype(int).tolist()
        cv2.line(image, tuple(ends[:2]), tuple(ends[2:]), (base + rng.uniform(-45, 45, 3)).tolist(),
                 int(rng.integers(1, 3)))
    image += rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(rng.uniform(0, 10))
    return np.clip(image, 0, 255)


def _colour(rng, around):
    """The first of 64 random colours at least CONTRAST from every pixel of `around`; else the farthest one."""
    candidates = rng.integers(0, 256, (64, 3)).astype(np.float32)
    pixels = around.reshape(-1, 3)
    squares = (pixels * pixels).sum(1)[:, None]
    nearest = []
    for batch in np.split(candidates, 8):   # usually the first batch has one
        d2 = (squares - 2 * pixels @ batch.T).min(0) + (batch * batch).sum(1)
        good = np.flatnonzero(d2 >= CONTRAST ** 2)
        if good.size:
            return batch[good[0]]
        nearest.append(d2)
    return candidates[np.concatenate(nearest).argmax()]


def render(rng, size, classes=SHAPES, objects=None, sides=(MIN_SIDE, MAX_SIDE), crossing=0.15):
    """One image (size x size x 3 uint8, BGR) and its list of Shape, drawn from generator rng: 1-6 objects, or
    `objects`, of a side from sides[0] to sides[1] of the image's, a `crossing` fraction of them free to cross the
    border."""
    image = background(rng, size)
    top = np.full((size, size), -1, np.int16)   # the object seen at each pixel
    placed, areas, visible = [], [], []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1) if objects is None else objects):
        cls = int(rng.integers(len(classes)))
        name = classes[cls]
        side = size * np.exp(rng.uniform(np.log(sides[0]), np.log(sides[1])))
        angle = rng.uniform(0, 2 * np.pi)
        ratio = rng.uniform(0.28, 0.38) if name == "cross" else rng.uniform(0.45, 0.65)
        span = int(np.ceil(side)) + 4
        for _ in range(TRIES):
            if rng.random() < crossing:     # free to cross the border
                cx, cy = rng.uniform(0, size, 2)
            else:
                cx, cy = rng.uniform(side / 2, size - side / 2, 2)
            ox, oy = int(np.floor(cx - span / 2)), int(np.floor(cy - span / 2))
            local = np.zeros((span, span), np.uint8)
            shape_mask(name, side, np.array([cx - ox, cy - oy]), angle, ratio, local)
            x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + span, size), min(oy + span, size)
            if x0 >= x1 or y0 >= y1:
                continue
            drawn = local[y0 - oy:y1 - oy, x0 - ox:x1 - ox].astype(bool)   # the part inside the image
            total, area = int(local.sum()), int(drawn.sum())
            if area < 4 or area < MIN_INSIDE * total:
                continue
            under = np.bincount(top[y0:y1, x0:x1][drawn] + 1, minlength=len(placed) + 1)[1:]
            if any(visible[j] - under[j] < (1 - MAX_OCCLUDED) * areas[j] for j in range(len(placed))):
                continue
            ys, xs = np.nonzero(drawn)
            box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
            m = 3
            around = image[max(box[1] - m, 0):box[3] + m, max(box[0] - m, 0):box[2] + m]
            colour = _colour(rng, around)
            image[y0:y1, x0:x1][drawn] = colour
            top[y0:y1, x0:x1][drawn] = len(placed)
            for j in range(len(placed)):
                visible[j] -= int(under[j])
            placed.append((cls, name, box, tuple(int(c) for c in colour), area / total))
            areas.append(area)
            visible.append(area)
            break
    noise = rng.integers(-NOISE, NOISE + 1, image.shape, dtype=np.int16)
    image = np.clip(np.rint(image).astype(np.int16) + noise, 0, 255).astype(np.uint8)
    shapes = [Shape(cls, name, box, colour, visible[j] / areas[j], inside)
              for j, (cls, name, box, colour, inside) in enumerate(placed)]
    return image, shapes


def sample(seed, index, size=160, classes=SHAPES):
    """Image `index` of the dataset of `seed`: (image, shapes), exactly what generate writes for it."""
    return render(np.random.default_rng([seed, 1, index]), size, tuple(classes))


def label_lines(shapes, size):
    """Darknet label lines for shapes: `class x y w h`, relative to the image side."""
    lines = []
    for s in shapes:
        x0, y0, x1, y1 = s.box
        lines.append("%d %.6f %.6f %.6f %.6f\n" % (s.cls, (x0 + x1) / 2 / size, (y0 + y1) / 2 / size,
                                                  (x1 - x0) / size, (y1 - y0) / size))
    return "".join(lines)


# ---- the dataset ----

# Stored, not deflated: the textured images hardly compress (50 KB deflated, 75 KB stored at 160x160), and training
# decodes each image again and again: 0.34 ms a decode instead of 1.1 (17 ms of CPU a batch of 16 in make demo).
PNG_COMPRESSION = 0


def write_png(path, image):
    """An image of the dataset, stored (PNG_COMPRESSION); returns the path."""
    if not cv2.imwrite(path, image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]):
        raise OSError(f"cannot write {path}")
    return path


def generate(outdir, n=2000, size=160, seed=0, valid_fraction=0.2, classes=SHAPES, workers=None):
    """Write n images with labels, train.txt/valid.txt, shapes.names and shapes.data under outdir; see the module.
    Images are drawn on `workers` threads (default: one a CPU); the files do not depend on it."""
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {', '.join(SHAPES)}; got {', '.join(classes) or 'none'}")
    if int(n) != n or n < 1:
        raise ValueError(f"n={n}: need at least one image")
    if int(size) != size or not 32 <= size <= 4096:
        raise ValueError(f"size={size}: need an integer from 32 to 4096")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction={valid_fraction}: need 0 <= fraction < 1")
    n, size = int(n), int(size)
    outdir = os.path.abspath(os.fsdecode(outdir))
    images, labels, backup = (os.path.join(outdir, d) for d in ("images", "labels", "backup"))
    probe = os.path.join(images, "00000.png")
    if label_path(probe) != os.path.join(labels, "00000.txt"):
        raise ValueError(f"{outdir}: Darknet would look for labels at {label_path(probe)} (its path rule replaces the"
                         f" first 'images', 'JPEGImages' or 'raw'); choose a folder whose path has none of them")
    for d in (images, labels, backup):
        os.makedirs(d, exist_ok=True)

    width = max(5, len(str(n - 1)))

    def write(i):
        image, shapes = sample(seed, i, size, classes)
        path = write_png(os.path.join(images, f"{i:0{width}d}.png"), image)
        with open(os.path.join(labels, f"{i:0{width}d}.txt"), "w") as f:
            f.write(label_lines(shapes, size))
        return path, [s.name for s in shapes]

    paths, counts = [], dict.fromkeys(classes, 0)
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:  # cv2 and numpy free the GIL
        for path, names in pool.map(write, range(n)):
            paths.append(path)
            for name in names:
                counts[name] += 1

    n_valid = int(round(n * valid_fraction))
    if valid_fraction > 0 and n > 1:
        n_valid = min(max(n_valid, 1), n - 1)
    is_valid = np.zeros(n, bool)
    is_valid[np.random.default_rng([seed, 0]).permutation(n)[:n_valid]] = True
    train = [p for p, v in zip(paths, is_valid) if not v]
    valid = [p for p, v in zip(paths, is_valid) if v]
    files = {k: os.path.join(outdir, k) for k in ("train.txt", "valid.txt", "shapes.names", "shapes.data")}
    for key, lines in (("train.txt", train), ("valid.txt", valid), ("shapes.names", classes)):
        with open(files[key], "w") as f:
            f.write("".join(line + "\n" for line in lines))
    with open(files["shapes.data"], "w") as f:
        f.write(f"classes={len(classes)}\ntrain={files['train.txt']}\nvalid={files['valid.txt']}\n"
                f"names={files['shapes.names']}\nbackup={backup}\neval=voc\n")
    return Dataset(files["shapes.data"], files["shapes.names"], train, valid, counts)
