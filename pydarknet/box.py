"""Detection records and box.c's arithmetic, on the host.

Darknet keeps one `detection` struct per box (bbox, classes, prob[], mask[], objectness, sort_class). Here a
`Detections` container holds the same fields as arrays, so that tens of thousands of boxes stay cheap, and indexing
it gives `DetectionStruct` record views that read (and write) those arrays. decode.py makes them from the output layers,
nms.py suppresses them.

box.c's functions come twice: as numpy functions over arrays of x, y, w, h (box_iou and friends, with the guard
that makes the IoU 0 where the intersection or the union is 0), and as numba scalars (`intersection_and_union`,
`iou`) that the compiled loops call: the YOLO losses, NMS. Both compute in float32, operation for operation as C.
"""
import contextlib
import warnings

import numpy as np

from .jit import ieee_kernel


_F32 = np.float32

__all__ = [
    "DetectionStruct", "Detections", "DetectionWarning", "one_warning_for_dropped_detections",
    "box_iou", "box_intersection", "box_union", "box_rmse", "overlap", "box_corners",
    "intersection_and_union", "iou",
]


# ----------------------------------------------------------------------------------------------------------------
# Detection records

class DetectionWarning(UserWarning):
    """Detections were dropped because the network's output was not finite (Network.detections)."""

    def __init__(self, path, dropped, total, images=1):
        where = f" in {images} images" if images > 1 else ""
        super().__init__(f"{path}: dropped {dropped} of {total} detections{where} whose box or score is not a finite "
                         f"number (the network output inf/NaN: incomplete weights, or a network not trained yet?)")
        self.path, self.dropped, self.total, self.images = path, dropped, total, images


@contextlib.contextmanager
def one_warning_for_dropped_detections():
    """Over many images (valid, recall, map): the DetectionWarnings of each image summed into one at the end;
    other warnings pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    drops = [w.message for w in caught if issubclass(w.category, DetectionWarning)]
    for w in caught:
        if not issubclass(w.category, DetectionWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if drops:
        warnings.warn(DetectionWarning(drops[0].path, sum(d.dropped for d in drops), sum(d.total for d in drops),
                                       sum(d.images for d in drops)), stacklevel=3)


def _column(name, doc=None, convert=None):
    """A DetectionStruct attribute that reads and writes row i of the container's array `name`."""
    def get(self):
        value = getattr(self._dets, name)[self._i]
        return convert(value) if convert else value

    def put(self, value):
        getattr(self._dets, name)[self._i] = value

    return property(get, put, doc=doc)


class DetectionStruct:
    """One record of a `Detections` container, as Darknet's `detection` struct: reads and writes go to the arrays.

    The view is positional, like `dets[i]` in C: after an in-place NMS reorders the container, `dets[i]` shows
    whatever record now sits at position i.
    """

    __slots__ = ("_dets", "_i")

    def __init__(self, dets, i):
        self._dets = dets
        self._i = i

    @property
    def index(self):
        return self._i

    bbox = _column("bbox", "x, y, w, h (centre and size): a writable float32 view of 4 values.")
    objectness = _column("objectness")
    prob = _column("prob", "The class probabilities: a writable float32 view.")
    sort_class = _column("sort_class", convert=int)

    @property
    def classes(self):
        """Darknet's dets[i].classes: set by the yolo layer only, 0 for region and detection layers."""
        return int(self._dets.classes_field[self._i])

    @property
    def mask(self):
        return None if self._dets.mask is None else self._dets.mask[self._i]

    def __repr__(self):
        x, y, w, h = (float(v) for v in self.bbox)
        return (f"DetectionStruct(bbox=({x:.6g}, {y:.6g}, {w:.6g}, {h:.6g}), objectness={float(self.objectness):.6g}, "
                f"prob={np.array2string(self.prob, precision=6)}, sort_class={self.sort_class}, "
                f"classes={self.classes})")


class Detections:
    """Darknet's array of `detection` structs, stored as arrays.

    bbox (n,4) float32 x,y,w,h; objectness (n,) float32; prob (n,classes) float32; sort_class (n,) int32;
    classes_field (n,) int32 (darknet's dets[i].classes); mask (n,coords-4) float32 or None.
    """

    def __init__(self, bbox, objectness, prob, sort_class=None, classes_field=None, mask=None):
        self.bbox = np.ascontiguousarray(bbox, dtype=_F32).reshape(-1, 4)
        n = self.bbox.shape[0]
        self.objectness = np.ascontiguousarray(objectness, dtype=_F32).reshape(n)
        prob = np.ascontiguousarray(prob, dtype=_F32)
        self.prob = prob if prob.ndim == 2 and prob.shape[0] == n else prob.reshape(n, -1)
        self.sort_class = (np.zeros(n, np.int32) if sort_class is None
                           else np.ascontiguousarray(sort_class, dtype=np.int32).reshape(n))
        self.classes_field = (np.zeros(n, np.int32) if classes_field is None
                              else np.ascontiguousarray(classes_field, dtype=np.int32).reshape(n))
        self.mask = None if mask is None else np.ascontiguousarray(mask, dtype=_F32).reshape(n, -1)

    @classmethod
    def empty(cls, n, classes, mask_size=0):
        """n zeroed records, as make_network_boxes' calloc leaves them."""
        return cls(np.zeros((n, 4), _F32), np.zeros(n, _F32), np.zeros((n, classes), _F32),
                   mask=np.zeros((n, mask_size), _F32) if mask_size > 0 else None)

    @classmethod
    def concat(cls, parts):
        """Join the records of several layers, in network order (fill_network_boxes' `dets += count`).

        Darknet sizes every record's prob[] by the last layer's classes; layers with fewer classes are padded with 0.
        """
        parts = list(parts)
        if not parts:
            return cls.empty(0, 0)
        classes = max(p.prob.shape[1] for p in parts)
        probs = [p.prob if p.prob.shape[1] == classes else
                 np.pad(p.prob, ((0, 0), (0, classes - p.prob.shape[1]))) for p in parts]
        mask = None
        if any(p.mask is not None for p in parts):
            size = max(p.mask.shape[1] for p in parts if p.mask is not None)
            mask = np.concatenate([np.zeros((len(p), size), _F32) if p.mask is None else
                                   np.pad(p.mask, ((0, 0), (0, size - p.mask.shape[1]))) for p in parts])
        return cls(np.concatenate([p.bbox for p in parts]), np.concatenate([p.objectness for p in parts]),
                   np.concatenate(probs), np.concatenate([p.sort_class for p in parts]),
                   np.concatenate([p.classes_field for p in parts]), mask)

    @property
    def classes(self):
        """Length of each record's prob[]."""
        return self.prob.shape[1]

    def __len__(self):
        return self.bbox.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self)
            i = int(key)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"detection index {key} out of range for {n} records")
            return DetectionStruct(self, i)
        return Detections(self.bbox[key], self.objectness[key], self.prob[key], self.sort_class[key],
                          self.classes_field[key], None if self.mask is None else self.mask[key])

    def __iter__(self):
        return (DetectionStruct(self, i) for i in range(len(self)))

    def __repr__(self):
        return f"Detections(n={len(self)}, classes={self.classes})"

    def copy(self):
        return Detections(self.bbox.copy(), self.objectness.copy(), self.prob.copy(), self.sort_class.copy(),
                          self.classes_field.copy(), None if self.mask is None else self.mask.copy())

    def finite(self):
        """The records whose box, objectness and class probabilities are all finite numbers, and how many were not.

        A network whose weights are partial or truncated can output inf or NaN; such records would turn into
        garbage boxes or crash the pixel arithmetic of drawing, so callers drop them (Network.detections)."""
        ok = np.isfinite(self.bbox).all(1) & np.isfinite(self.objectness) & np.isfinite(self.prob).all(1)
        dropped = len(self) - int(ok.sum())
        return (self if dropped == 0 else self[ok]), dropped

    def permute(self, order):
        """Reorder the records in place (every array keeps its identity): position i gets record order[i]."""
        order = np.asarray(order, dtype=np.int64)
        self.bbox[:] = self.bbox[order]
        self.objectness[:] = self.objectness[order]
        self.prob[:] = self.prob[order]
        self.sort_class[:] = self.sort_class[order]
        self.classes_field[:] = self.classes_field[order]
        if self.mask is not None:
            self.mask[:] = self.mask[order]


# ----------------------------------------------------------------------------------------------------------------
# box.c

def _xywh(box):
    b = np.asarray(box, dtype=_F32)
    return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


def overlap(x1, w1, x2, w2):
    """box.c overlap(): the 1-D intersection length, with C's ternaries (a NaN edge loses to the other box)."""
    x1, w1, x2, w2 = (np.asarray(v, dtype=_F32) for v in (x1, w1, x2, w2))
    two = _F32(2)
    l1 = x1 - w1 / two
    l2 = x2 - w2 / two
    left = np.where(l1 > l2, l1, l2)
    r1 = x1 + w1 / two
    r2 = x2 + w2 / two
    right = np.where(r1 < r2, r1, r2)
    return right - left


def box_intersection(a, b):
    ax, ay, aw, ah = _xywh(a)
    bx, by, bw, bh = _xywh(b)
    w = overlap(ax, aw, bx, bw)
    h = overlap(ay, ah, by, bh)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where((w < 0) | (h < 0), _F32(0), w * h)


def box_union(a, b):
    ax, ay, aw, ah = _xywh(a)
    bx, by, bw, bh = _xywh(b)
    i = box_intersection(a, b)
    with np.errstate(invalid="ignore", over="ignore"):
        return aw * ah + bw * bh - i


def box_iou(a, b):
    """box.c box_iou() in float32: 0 when the intersection or the union is 0. Boxes are x,y,w,h; arrays broadcast."""
    i = box_intersection(a, b)
    u = box_union(a, b)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        iou = np.where((i == 0) | (u == 0), _F32(0), i / np.where(u == 0, _F32(1), u))
    iou = iou.astype(_F32)
    return iou[()] if iou.ndim == 0 else iou


def box_rmse(a, b):
    """box.c box_rmse(): float differences, pow/sqrt in double, returned as float."""
    d = np.asarray(a, dtype=_F32) - np.asarray(b, dtype=_F32)
    r = np.sqrt(np.sum(d.astype(np.float64) ** 2, axis=-1)).astype(_F32)
    return r[()] if r.ndim == 0 else r


def box_corners(bbox):
    """x,y,w,h -> left, top, right, bottom (float32, as box.c's overlap computes the edges)."""
    x, y, w, h = _xywh(bbox)
    two = _F32(2)
    return np.stack([x - w / two, y - h / two, x + w / two, y + h / two], axis=-1)



# ----------------------------------------------------------------------------------------------------------------
# box.c on float32 scalars, for compiled loops

@ieee_kernel(inline="always")
def _overlap1(x1, w1, x2, w2):
    """box.c overlap() on scalars."""
    two = _F32(2.0)
    l1 = x1 - w1 / two
    l2 = x2 - w2 / two
    left = l1 if l1 > l2 else l2
    r1 = x1 + w1 / two
    r2 = x2 + w2 / two
    right = r1 if r1 < r2 else r2
    return right - left


@ieee_kernel(inline="always")
def intersection_and_union(ax, ay, aw, ah, bx, by, bw, bh):
    """box.c box_intersection() and box_union() of two boxes, the intersection computed once."""
    w = _overlap1(ax, aw, bx, bw)
    h = _overlap1(ay, ah, by, bh)
    inter = _F32(0.0)
    if not (w < 0 or h < 0):
        inter = w * h
    union = aw * ah + bw * bh - inter
    return inter, union


@ieee_kernel(inline="always")
def iou(ax, ay, aw, ah, bx, by, bw, bh):
    """pjreddie's box_iou: box_intersection / box_union, with no guard (0/0 is NaN, x/0 is inf, and a NaN never wins
    a `>`). The YOLO losses use it as it is; NMS takes it as 0 where the intersection or the union is 0."""
    inter, union = intersection_and_union(ax, ay, aw, ah, bx, by, bw, bh)
    return inter / union
