"""Boxes, detections and non-maximum suppression: Darknet's box.c, the get_*_detections of its three output layers,
and get_network_boxes' record layout, on the host.

Darknet keeps one `detection` struct per box (bbox, classes, prob[], mask[], objectness, sort_class). Here a
`Detections` container holds the same fields as arrays, so that tens of thousands of boxes stay cheap, and indexing
it gives `Detection` record views that read (and write) those arrays.

Arithmetic follows the C source: float32 where C computes in float, float64 where C promotes to double (`exp()`,
`pow()` and the `2.` literals of the letterbox correction), rounding to float32 where C stores into a float. The
goldens come from an -Ofast build, whose reassociations differ from the source by an ulp here and there (the
letterbox factor 96/72 comes out 1.3333333 there, 1.3333334 here); those are not reproduced.

NMS is Darknet's do_nms_sort / do_nms_obj, record for record: the swap loop that moves objectness==0 records to the
end, glibc's qsort (a top-down merge sort, hence stable) with nms_comparator's float difference, and the greedy pass.
Only the search for overlapping pairs differs: instead of testing every later box against every kept box for each
class, the pairs with IoU > thresh are found once for all classes (a grid over box centres, by size class, with
bounds that provably keep every pair; see _overlap_pairs), and each class's greedy pass walks that adjacency,
compiled with numba. The result is identical to the quadratic loop, ties and NaNs included.
"""
import contextlib
import math
import warnings

import numpy as np

from .jit import kernel


_F32 = np.float32

__all__ = [
    "Detection", "Detections", "DetectionWarning", "one_warning_for_dropped_detections",
    "yolo_detections", "yolo_num_detections", "region_detections", "detection_detections", "correct_boxes",
    "do_nms_sort", "do_nms_obj",
    "box_iou", "box_intersection", "box_union", "box_rmse", "overlap", "box_corners",
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
    """A Detection attribute that reads and writes row i of the container's array `name`."""
    def get(self):
        value = getattr(self._dets, name)[self._i]
        return convert(value) if convert else value

    def put(self, value):
        getattr(self._dets, name)[self._i] = value

    return property(get, put, doc=doc)


class Detection:
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
        return (f"Detection(bbox=({x:.6g}, {y:.6g}, {w:.6g}, {h:.6g}), objectness={float(self.objectness):.6g}, "
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
            return Detection(self, i)
        return Detections(self.bbox[key], self.objectness[key], self.prob[key], self.sort_class[key],
                          self.classes_field[key], None if self.mask is None else self.mask[key])

    def __iter__(self):
        return (Detection(self, i) for i in range(len(self)))

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
# Decoding the output layers

def _layer_entries(output, n, entries, w, h):
    """The activated (n*entries, h, w) buffer as (n, entries, h*w): entry (a, k, loc) = darknet's entry_index."""
    output = np.asarray(output, dtype=_F32)
    size = n * entries * w * h
    if output.size != size:
        raise ValueError(f"layer output has {output.size} values, expected {n}*{entries}*{w}*{h} = {size}")
    return output.reshape(n, entries, w * h)


def _letterbox_size(img_w, img_h, net_w, net_h, letter):
    if not letter:
        return net_w, net_h
    if _F32(net_w) / _F32(img_w) < _F32(net_h) / _F32(img_h):
        return net_w, (img_h * net_w) // img_w
    return (img_w * net_h) // img_h, net_h


def correct_boxes(bbox, img_w, img_h, net_w, net_h, relative=True, letter=True):
    """correct_yolo_boxes / correct_region_boxes (identical in pjreddie's darknet), in place on an (n,4) array.

    Undoes the letterbox: new_w/new_h is the image scaled into the network input keeping its aspect. The x/y shift
    `(netw - new_w)/2./netw` is a double, so x and y are computed in double and stored as float. With
    relative=False the boxes are scaled to pixels.
    """
    new_w, new_h = _letterbox_size(img_w, img_h, net_w, net_h, letter)
    x = bbox[:, 0].astype(np.float64)
    y = bbox[:, 1].astype(np.float64)
    bbox[:, 0] = ((x - (net_w - new_w) / 2. / net_w) / np.float64(_F32(new_w) / _F32(net_w))).astype(_F32)
    bbox[:, 1] = ((y - (net_h - new_h) / 2. / net_h) / np.float64(_F32(new_h) / _F32(net_h))).astype(_F32)
    bbox[:, 2] *= _F32(net_w) / _F32(new_w)
    bbox[:, 3] *= _F32(net_h) / _F32(new_h)
    if not relative:
        bbox[:, 0] *= _F32(img_w)
        bbox[:, 2] *= _F32(img_w)
        bbox[:, 1] *= _F32(img_h)
        bbox[:, 3] *= _F32(img_h)
    return bbox


def _anchor_box(raw_w, raw_h, bias_w, bias_h, div_w, div_h):
    """exp(x) * biases[2n] / w: exp() is double in C, so the product is a double rounded once to float."""
    w = (np.exp(raw_w.astype(np.float64)) * np.float64(_F32(bias_w)) / div_w).astype(_F32)
    h = (np.exp(raw_h.astype(np.float64)) * np.float64(_F32(bias_h)) / div_h).astype(_F32)
    return w, h


def yolo_num_detections(output, w, h, n, classes, thresh):
    """yolo_num_detections: how many (cell, anchor) objectness values exceed thresh."""
    out = _layer_entries(output, n, 4 + 1 + classes, w, h)
    return int(np.count_nonzero(out[:, 4, :] > _F32(thresh)))


def yolo_detections(output, w, h, mask, anchors, classes, net_w, net_h, img_w, img_h, thresh,
                    relative=True, letter=True):
    """get_yolo_detections + correct_yolo_boxes for one image.

    output: the yolo layer's activated buffer, (len(mask)*(5+classes), h, w). anchors: the cfg's full anchor list
    (biases); mask: which anchors this layer uses. Records are made, cell by cell and within a cell anchor by
    anchor, for every objectness > thresh; prob[j] = objectness*class_j if that exceeds thresh, else 0.
    classes_field = classes, sort_class = 0.
    """
    mask = [int(m) for m in mask]
    n = len(mask)
    biases = np.asarray(anchors, dtype=_F32).reshape(-1)
    out = _layer_entries(output, n, 4 + 1 + classes, w, h)
    t = _F32(thresh)
    obj = out[:, 4, :].T                                    # (cell, anchor): darknet's loop order
    cell, anchor = np.nonzero(obj > t)                      # NaN objectness is skipped, as yolo_num_detections does
    count = cell.size
    objectness = obj[cell, anchor]
    col = (cell % w).astype(_F32)
    row = (cell // w).astype(_F32)
    bbox = np.empty((count, 4), _F32)
    bbox[:, 0] = (col + out[anchor, 0, cell]) / _F32(w)
    bbox[:, 1] = (row + out[anchor, 1, cell]) / _F32(h)
    bias_index = np.asarray(mask, dtype=np.int64)[anchor]
    bbox[:, 2], bbox[:, 3] = _anchor_box(out[anchor, 2, cell], out[anchor, 3, cell],
                                         biases[2 * bias_index], biases[2 * bias_index + 1], net_w, net_h)
    prob = objectness[:, None] * out[anchor[:, None], 5 + np.arange(classes)[None, :], cell[:, None]]
    prob = np.where(prob > t, prob, _F32(0)).astype(_F32)
    correct_boxes(bbox, img_w, img_h, net_w, net_h, relative, letter)
    return Detections(bbox, objectness, prob.reshape(count, classes),
                      classes_field=np.full(count, classes, np.int32))


def _hierarchy_top_prediction(pred, tree, thresh):
    """tree.c hierarchy_top_prediction for one record's (already hierarchy-multiplied) class vector."""
    p = _F32(1)
    group = 0
    t = _F32(thresh)
    while True:
        best = _F32(0)
        best_i = 0
        offset = int(tree.group_offset[group])
        for i in range(int(tree.group_size[group])):
            val = pred[offset + i]
            if val > best:
                best_i = offset + i
                best = val
        if p * best > t:
            p = p * best
            group = int(tree.child[best_i])
            if group < 0:
                return best_i
        elif group == 0:
            return best_i
        else:
            return int(tree.parent[int(tree.group_offset[group])])


def region_detections(output, w, h, n, anchors, classes, coords, net_w, net_h, img_w, img_h, thresh,
                      relative=True, background=0, softmax_tree=None, hier_thresh=0.5, letter=True):
    """get_region_detections + correct_region_boxes for one image (pjreddie's version, which letterboxes too).

    Every (anchor, cell) gives a record, in darknet's order index = anchor*w*h + cell (anchor-major, unlike yolo).
    objectness = scale > thresh ? scale : 0 (scale = 1 with background); class probabilities are filled only where
    that objectness is nonzero. With coords > 4 the extra coords go to `mask`. With a softmax_tree (an object with
    darknet's tree fields parent, child, group_size, group_offset) the hierarchy path is taken: only the top
    prediction gets scale (hier_thresh is darknet's tree_thresh).
    """
    entries = coords + 1 + classes
    biases = np.asarray(anchors, dtype=_F32).reshape(-1)
    out = _layer_entries(output, n, entries, w, h)
    t = _F32(thresh)
    hw = w * h
    total = n * hw
    anchor = np.repeat(np.arange(n), hw)
    cell = np.tile(np.arange(hw), n)
    col = (cell % w).astype(_F32)
    row = (cell // w).astype(_F32)
    bbox = np.empty((total, 4), _F32)
    bbox[:, 0] = (col + out[anchor, 0, cell]) / _F32(w)
    bbox[:, 1] = (row + out[anchor, 1, cell]) / _F32(h)
    bbox[:, 2], bbox[:, 3] = _anchor_box(out[anchor, 2, cell], out[anchor, 3, cell],
                                         biases[2 * anchor], biases[2 * anchor + 1], w, h)
    scale = np.ones(total, _F32) if background else out[:, coords, :].reshape(total)
    objectness = np.where(scale > t, scale, _F32(0)).astype(_F32)
    mask = out[:, 4:coords, :].transpose(0, 2, 1).reshape(total, coords - 4).copy() if coords > 4 else None
    prob = np.zeros((total, classes), _F32)
    if softmax_tree is not None:
        first = coords + (0 if background else 1)
        pred = out[:, first:first + classes, :].transpose(0, 2, 1).reshape(total, classes).copy()
        parent = np.asarray(softmax_tree.parent, dtype=np.int64)
        for j in range(classes):                            # hierarchy_predictions(..., only_leaves=0)
            if parent[j] >= 0:
                pred[:, j] *= pred[:, parent[j]]
        for r in range(total):
            j = _hierarchy_top_prediction(pred[r], softmax_tree, hier_thresh)
            prob[r, j] = scale[r] if scale[r] > t else _F32(0)
    else:
        cls = out[:, coords + 1:coords + 1 + classes, :].transpose(0, 2, 1).reshape(total, classes)
        p = scale[:, None] * cls
        keep = (objectness != 0)[:, None]
        prob = np.where(keep & (p > t), p, _F32(0)).astype(_F32)
    correct_boxes(bbox, img_w, img_h, net_w, net_h, relative, letter)
    return Detections(bbox, objectness, prob, mask=mask)


def detection_detections(output, side, n, classes, sqrt, img_w, img_h, thresh):
    """get_detection_detections (YOLO v1) for one image.

    output: the layer's flat vector [side*side*classes class probs | side*side*n scales | side*side*n*4 boxes].
    Boxes are in pixels of the image and NOT letterbox-corrected; w,h are squared when sqrt (pow() in double).
    objectness = scale (unthresholded); prob[j] = scale*class_j if > thresh, else 0. Order: cell-major, index = i*n+a.
    """
    out = np.asarray(output, dtype=_F32).reshape(-1)
    locations = side * side
    size = locations * (classes + n * 5)
    if out.size != size:
        raise ValueError(f"detection output has {out.size} values, expected {size}")
    t = _F32(thresh)
    cls = out[:locations * classes].reshape(locations, classes)
    scale = out[locations * classes:locations * (classes + n)].reshape(locations, n)
    boxes = out[locations * (classes + n):].reshape(locations, n, 4)
    loc = np.arange(locations)
    col = (loc % side).astype(_F32)[:, None]
    row = (loc // side).astype(_F32)[:, None]
    bbox = np.empty((locations, n, 4), _F32)
    bbox[..., 0] = (boxes[..., 0] + col) / _F32(side) * _F32(img_w)
    bbox[..., 1] = (boxes[..., 1] + row) / _F32(side) * _F32(img_h)
    power = 2 if sqrt else 1
    bbox[..., 2] = (boxes[..., 2].astype(np.float64) ** power * img_w).astype(_F32)
    bbox[..., 3] = (boxes[..., 3].astype(np.float64) ** power * img_h).astype(_F32)
    p = scale[:, :, None] * cls[:, None, :]
    prob = np.where(p > t, p, _F32(0)).astype(_F32)
    return Detections(bbox.reshape(-1, 4), scale.reshape(-1), prob.reshape(-1, classes))


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
# NMS kernels

@kernel(inline="always")
def _iou32(ax, ay, aw, ah, bx, by, bw, bh):
    """box_iou(a, b) on float32 scalars, operation for operation as box.c."""
    two = np.float32(2.0)
    zero = np.float32(0.0)
    l1 = ax - aw / two
    l2 = bx - bw / two
    left = l1 if l1 > l2 else l2
    r1 = ax + aw / two
    r2 = bx + bw / two
    right = r1 if r1 < r2 else r2
    ow = right - left
    t1 = ay - ah / two
    t2 = by - bh / two
    top = t1 if t1 > t2 else t2
    b1 = ay + ah / two
    b2 = by + bh / two
    bottom = b1 if b1 < b2 else b2
    oh = bottom - top
    inter = zero
    if not (ow < zero or oh < zero):
        inter = ow * oh
    union = aw * ah + bw * bh - inter
    if inter == zero or union == zero:
        return zero
    return inter / union


@kernel
def _zero_objectness_to_end(objectness):
    """do_nms_sort/do_nms_obj's first loop: swap each objectness==0 record with the last live one (not stable)."""
    n = objectness.shape[0]
    order = np.arange(n)
    k = n - 1
    i = 0
    while i <= k:
        if objectness[order[i]] == 0:
            tmp = order[i]
            order[i] = order[k]
            order[k] = tmp
            k -= 1
        else:
            i += 1
    return order, k + 1


# A box is "gridded" when its float edges give its size to within this relative error (and its area is a normal
# float). For two gridded boxes, box_iou > thresh implies that their intersection along each axis exceeds
# thresh * (1 - 4.4 * _CONDITION) times the larger extent (the rounding of every float operation included); the
# pair finder uses thresh * _SHRINK, which leaves room.
_CONDITION = 5e-4
_SHRINK = 0.98


@kernel
def _col_of(centre, width):
    """Grid column of a centre: floor(centre / width), clamped so that it fits int64 (monotone in centre)."""
    q = centre / width
    if q > 1e18:
        q = 1e18
    elif q < -1e18:
        q = -1e18
    return np.int64(np.floor(q))


@kernel
def _first_in_cell(gcol, gcy, lo, hi, col, cy):
    """First position in [lo, hi) (sorted by column, then centre y) with column > col, or == col and y > cy."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if gcol[mid] < col or (gcol[mid] == col and gcy[mid] <= cy):
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def _reach(ea, lo, hi, t3):
    """Largest (ea + eb)/2 - t3*max(ea, eb) over eb in [lo, hi]: how far apart two centres may be along an axis."""
    best = (ea + hi) / 2 - t3 * max(ea, hi)
    e = min(max(ea, lo), hi)
    return max(best, (ea + e) / 2 - t3 * max(ea, e))


@kernel
def _overlap_pairs(bbox, ids, thresh, t3, class_span, capacity):
    """The directed pairs (src[e], dst[e]) of records among `ids` with box_iou(src, dst) > thresh >= 0.

    Returns (src, dst, count); when count exceeds `capacity` only the first `capacity` pairs were stored, and the
    caller asks again with room for all. Boxes come in four kinds (edges l, r, t, b computed in float32 as box.c
    computes them):
    * gridded: finite edges, w, h > 0, edge extents W = r - l, H = b - t within _CONDITION of w, h. For two
      such boxes, float box_iou > thresh implies that along x the exact overlap of the edge intervals exceeds
      t3 * max(Wa, Wb) (t3 = thresh * _SHRINK, which covers every rounding), so |centre_a - centre_b| <
      (Wa + Wb)/2 - t3 * max(Wa, Wb) and min(Wa, Wb) > t3 * max(Wa, Wb); likewise along y. Boxes are grouped by
      the binary exponent of max(W, H); a box is only paired with classes at most `class_span` exponents above
      its own. Each class is a grid of narrow columns of centres, sorted by column then centre y; a box looks up
      the columns and the run of centres that a partner must lie in, screens each by the two bounds, and computes
      box_iou for the survivors.
    * edgeless: finite edges but w <= 0 or h <= 0: the intersection is never positive, no pairs.
    * loose: finite edges, w, h > 0 but not gridded (a tiny box far from the origin): tested against every box.
    * special: a NaN or infinite edge: tested against every box both ways (box.c's ternaries let a NaN edge lose,
      so such an IoU can be finite, and it is not symmetric).
    Between boxes with finite edges box_iou is symmetric (float + and * commute): each such pair found gives both
    directions.
    """
    m = ids.shape[0]
    two = np.float32(2.0)
    kind = np.zeros(m, np.int8)          # 0 gridded, 1 loose, 2 special, 3 edgeless
    expo = np.zeros(m, np.int64)
    cx = np.empty(m, np.float64)
    cy = np.empty(m, np.float64)
    ew = np.empty(m, np.float64)
    eh = np.empty(m, np.float64)
    ngrid = 0
    for p in range(m):
        r = ids[p]
        x = bbox[r, 0]
        y = bbox[r, 1]
        w = bbox[r, 2]
        h = bbox[r, 3]
        el = x - w / two
        er = x + w / two
        et = y - h / two
        eb = y + h / two
        if not (np.isfinite(el) and np.isfinite(er) and np.isfinite(et) and np.isfinite(eb)):
            kind[p] = 2
        elif not (w > 0 and h > 0):
            kind[p] = 3
        else:
            ew[p] = np.float64(er) - np.float64(el)
            eh[p] = np.float64(eb) - np.float64(et)
            cx[p] = (np.float64(el) + np.float64(er)) / 2
            cy[p] = (np.float64(et) + np.float64(eb)) / 2
            wd = np.float64(w)
            hd = np.float64(h)
            if abs(ew[p] - wd) > _CONDITION * wd or abs(eh[p] - hd) > _CONDITION * hd or wd * hd < 1e-30:
                kind[p] = 1
            else:
                expo[p] = math.frexp(max(ew[p], eh[p]))[1]
                ngrid += 1

    # gridded boxes: grouped by exponent class, then by column of centre x, then by centre y
    g = np.empty(ngrid, np.int64)
    q = 0
    for p in range(m):
        if kind[p] == 0:
            g[q] = p
            q += 1
    g = g[np.argsort(expo[g], kind="mergesort")]
    nclass = 0
    for u in range(ngrid):
        if u == 0 or expo[g[u]] != expo[g[u - 1]]:
            nclass += 1
    cstart = np.empty(nclass + 1, np.int64)
    cexp = np.empty(nclass, np.int64)
    cminw = np.empty(nclass, np.float64)
    cmaxw = np.empty(nclass, np.float64)
    cminh = np.empty(nclass, np.float64)
    cmaxh = np.empty(nclass, np.float64)
    gcls = np.empty(ngrid, np.int64)
    c = -1
    for u in range(ngrid):
        p = g[u]
        if u == 0 or expo[p] != expo[g[u - 1]]:
            c += 1
            cstart[c] = u
            cexp[c] = expo[p]
            cminw[c] = ew[p]
            cmaxw[c] = ew[p]
            cminh[c] = eh[p]
            cmaxh[c] = eh[p]
        gcls[u] = c
        cminw[c] = min(cminw[c], ew[p])
        cmaxw[c] = max(cmaxw[c], ew[p])
        cminh[c] = min(cminh[c], eh[p])
        cmaxh[c] = max(cmaxh[c], eh[p])
    cstart[nclass] = ngrid
    ccolw = cmaxw / 4                    # columns a quarter of the class's widest box
    gcol = np.empty(ngrid, np.int64)
    for c in range(nclass):
        lo = cstart[c]
        hi = cstart[c + 1]
        seg = g[lo:hi]
        seg = seg[np.argsort(cy[seg], kind="mergesort")]
        cols = np.empty(hi - lo, np.int64)
        for u in range(hi - lo):
            cols[u] = _col_of(cx[seg[u]], ccolw[c])
        perm = np.argsort(cols, kind="mergesort")
        for u in range(hi - lo):
            g[lo + u] = seg[perm[u]]
            gcol[lo + u] = cols[perm[u]]
    gcx = cx[g]
    gcy = cy[g]
    gew = ew[g]
    geh = eh[g]
    grec = ids[g]
    gx = np.empty(ngrid, np.float32)
    gy = np.empty(ngrid, np.float32)
    gw = np.empty(ngrid, np.float32)
    gh = np.empty(ngrid, np.float32)
    for u in range(ngrid):
        r = grec[u]
        gx[u] = bbox[r, 0]
        gy[u] = bbox[r, 1]
        gw[u] = bbox[r, 2]
        gh[u] = bbox[r, 3]

    src = np.empty(capacity, np.int64)
    dst = np.empty(capacity, np.int64)
    ne = 0
    for u in range(ngrid):
        ca = gcls[u]
        xa = gcx[u]
        ya = gcy[u]
        wa = gew[u]
        ha = geh[u]
        for cb in range(ca, nclass):
            if cexp[cb] - cexp[ca] > class_span:
                break
            rx = _reach(wa, cminw[cb], cmaxw[cb], t3)
            ry = _reach(ha, cminh[cb], cmaxh[cb], t3)
            if rx <= 0 or ry <= 0:
                continue
            rx += 1e-9 * (abs(xa) + wa + cmaxw[cb])      # cover float64 rounding of the bounds
            ry += 1e-9 * (abs(ya) + ha + cmaxh[cb])
            colw = ccolw[cb]
            end = cstart[cb + 1]
            col = _col_of(xa - rx, colw)
            last_col = _col_of(xa + rx, colw)
            start = cstart[cb]
            while col <= last_col:
                v = _first_in_cell(gcol, gcy, start, end, col, ya - ry)
                while v < end and gcol[v] == col and gcy[v] < ya + ry:
                    if cb != ca or v > u:
                        wb = gew[v]
                        hb = geh[v]
                        if abs(xa - gcx[v]) < (wa + wb) / 2 - t3 * max(wa, wb) + 1e-9 * (abs(xa) + wa + wb) \
                                and abs(ya - gcy[v]) < (ha + hb) / 2 - t3 * max(ha, hb) + 1e-9 * (abs(ya) + ha + hb):
                            if _iou32(gx[u], gy[u], gw[u], gh[u], gx[v], gy[v], gw[v], gh[v]) > thresh:
                                if ne + 2 <= capacity:
                                    src[ne] = grec[u]
                                    dst[ne] = grec[v]
                                    src[ne + 1] = grec[v]
                                    dst[ne + 1] = grec[u]
                                ne += 2
                    v += 1
                # Every position before v is in a column <= col, so the columns before gcol[v] are empty: skip them
                # (a wide box over a class of narrow ones spans up to 1e18 columns).
                if v == end:
                    break
                col = max(col + 1, gcol[v])
                start = v

    for ps in range(m):
        if kind[ps] == 0 or kind[ps] == 3:
            continue
        s = ids[ps]
        for po in range(m):
            if po == ps:
                continue
            o = ids[po]
            fwd = False
            bwd = False
            if kind[ps] == 1:
                # loose: finite edges both sides, so IoU is symmetric; a loose pair is taken from the lower position
                if kind[po] == 2 or kind[po] == 3 or (kind[po] == 1 and po < ps):
                    continue
                fwd = _iou32(bbox[s, 0], bbox[s, 1], bbox[s, 2], bbox[s, 3],
                             bbox[o, 0], bbox[o, 1], bbox[o, 2], bbox[o, 3]) > thresh
                bwd = fwd
            else:
                fwd = _iou32(bbox[s, 0], bbox[s, 1], bbox[s, 2], bbox[s, 3],
                             bbox[o, 0], bbox[o, 1], bbox[o, 2], bbox[o, 3]) > thresh
                # o -> s, unless o is special too (then o's own row adds it)
                bwd = kind[po] != 2 and _iou32(bbox[o, 0], bbox[o, 1], bbox[o, 2], bbox[o, 3],
                                               bbox[s, 0], bbox[s, 1], bbox[s, 2], bbox[s, 3]) > thresh
            if fwd:
                if ne < capacity:
                    src[ne] = s
                    dst[ne] = o
                ne += 1
            if bwd:
                if ne < capacity:
                    src[ne] = o
                    dst[ne] = s
                ne += 1

    return src, dst, ne


@kernel
def _csr(nrec, src, dst, ne):
    """Compressed rows of a directed edge list: the targets of record r are indices[indptr[r]:indptr[r + 1]]."""
    indptr = np.zeros(nrec + 1, np.int64)
    for e in range(ne):
        indptr[src[e] + 1] += 1
    for r in range(nrec):
        indptr[r + 1] += indptr[r]
    fill = indptr[:-1].copy()
    indices = np.empty(ne, np.int64)
    for e in range(ne):
        indices[fill[src[e]]] = dst[e]
        fill[src[e]] += 1
    return indptr, indices


def _overlap_graph(bbox, ids, thresh):
    """CSR adjacency over all records of the pairs among `ids` with box_iou(a, b) > thresh (thresh >= 0)."""
    t3 = float(thresh) * _SHRINK
    if t3 < 1e-6:             # for a tiny thresh, float underflow could break the size bounds: require overlap only
        t3 = 0.0
    span = _class_span(t3)
    capacity = 8 * len(ids) + 1024
    while True:
        src, dst, ne = _overlap_pairs(bbox, ids, thresh, t3, span, capacity)
        if ne <= capacity:
            return _csr(bbox.shape[0], src, dst, ne)
        capacity = ne


def _class_span(t3):
    """How many binary exponents apart the larger sides of two gridded boxes may be when each side of one is more
    than t3 times the other's: a pair d exponents apart has a ratio below 2**(1-d)."""
    t3 = float(t3)
    if t3 <= 0:
        return 1 << 40
    span = -1
    while 2.0 ** (1 - (span + 1)) > t3:
        span += 1
    return span


@kernel
def _dense_graph(bbox, ids, thresh):
    """Every directed pair with box_iou(a, b) > thresh: the fallback for thresh < 0, where disjoint boxes count."""
    nrec = bbox.shape[0]
    m = ids.shape[0]
    indptr = np.zeros(nrec + 1, np.int64)
    for pa in range(m):
        a = ids[pa]
        for pb in range(m):
            b = ids[pb]
            if pa != pb and _iou32(bbox[a, 0], bbox[a, 1], bbox[a, 2], bbox[a, 3],
                                   bbox[b, 0], bbox[b, 1], bbox[b, 2], bbox[b, 3]) > thresh:
                indptr[a + 1] += 1
    for r in range(nrec):
        indptr[r + 1] += indptr[r]
    indices = np.empty(indptr[nrec], np.int64)
    fill = indptr[:-1].copy()
    for pa in range(m):
        a = ids[pa]
        for pb in range(m):
            b = ids[pb]
            if pa != pb and _iou32(bbox[a, 0], bbox[a, 1], bbox[a, 2], bbox[a, 3],
                                   bbox[b, 0], bbox[b, 1], bbox[b, 2], bbox[b, 3]) > thresh:
                indices[fill[a]] = b
                fill[a] += 1
    return indptr, indices


@kernel
def _merge(key, idx, lo, n1, n, tkey, tidx):
    """One merge of glibc's msort_with_tmp: the left element is taken when cmp(left, right) <= 0."""
    i = lo
    e1 = lo + n1
    j = e1
    e2 = lo + n
    t = 0
    while i < e1 and j < e2:
        # nms_comparator: diff = a - b (float); diff < 0 -> 1, diff > 0 -> -1, else 0
        if not (key[i] - key[j] < 0):
            tkey[t] = key[i]
            tidx[t] = idx[i]
            i += 1
        else:
            tkey[t] = key[j]
            tidx[t] = idx[j]
            j += 1
        t += 1
    while i < e1:
        tkey[t] = key[i]
        tidx[t] = idx[i]
        i += 1
        t += 1
    for u in range(t):
        key[lo + u] = tkey[u]
        idx[lo + u] = tidx[u]


@kernel
def _msort(key, idx, n, tkey, tidx):
    """glibc's qsort for these records: msort_with_tmp, a top-down merge sort (n1 = n/2) of key[:n], idx[:n].

    With nms_comparator it sorts descending and stably, and a NaN compares equal to everything, as in C; the merge
    tree is glibc's, so even such inconsistent comparisons come out the same. Iterative, with an explicit stack
    (numba's cache cannot hold recursive functions).
    """
    stack_lo = np.empty(128, np.int64)
    stack_n = np.empty(128, np.int64)
    stack_state = np.empty(128, np.int64)
    sp = 0
    stack_lo[0] = 0
    stack_n[0] = n
    stack_state[0] = 0
    sp = 1
    while sp > 0:
        top = sp - 1
        lo = stack_lo[top]
        m = stack_n[top]
        if m <= 1:
            sp -= 1
            continue
        n1 = m // 2
        state = stack_state[top]
        if state == 0:                      # sort the left half first
            stack_state[top] = 1
            stack_lo[sp] = lo
            stack_n[sp] = n1
            stack_state[sp] = 0
            sp += 1
        elif state == 1:                    # then the right half
            stack_state[top] = 2
            stack_lo[sp] = lo + n1
            stack_n[sp] = m - n1
            stack_state[sp] = 0
            sp += 1
        else:                               # then merge them
            sp -= 1
            _merge(key, idx, lo, n1, m, tkey, tidx)


@kernel
def _radix_pass(src_u, src_i, dst_u, dst_i, n, shift, count):
    """One stable counting-sort pass on the 11-bit digit at `shift` (count: that digit's histogram)."""
    total = 0
    for b in range(2048):
        c = count[b]
        count[b] = total
        total += c
    for i in range(n):
        b = (src_u[i] >> np.uint32(shift)) & np.uint32(2047)
        j = count[b]
        count[b] = j + 1
        dst_u[j] = src_u[i]
        dst_i[j] = src_i[i]


@kernel
def _radix_sort_desc(key, idx, n, ua, ub, ib):
    """Stable descending sort of key[:n] (no NaN), carrying idx: an LSD radix sort on the float bits.

    Without NaN, nms_comparator is a consistent order in which a and b tie exactly when a == b (-0 == 0), so any
    stable sort gives glibc's result. Keys are mapped to unsigned integers whose ascending order is the
    descending order of the floats, with -0 folded into +0; three 11-bit passes, skipping those with one digit.
    """
    for i in range(n):
        key[i] = key[i] + np.float32(0.0)             # -0 -> +0 (key is scratch)
    bits = key[:n].view(np.uint32)
    hist = np.zeros((3, 2048), np.int64)
    for i in range(n):
        u = bits[i]
        if u & np.uint32(0x80000000):
            u = np.uint32(~u)                         # negative: flip all bits
        else:
            u = np.uint32(u | np.uint32(0x80000000))  # positive: flip the sign bit
        u = np.uint32(~u)                             # descending
        ua[i] = u
        hist[0, u & np.uint32(2047)] += 1
        hist[1, (u >> np.uint32(11)) & np.uint32(2047)] += 1
        hist[2, u >> np.uint32(22)] += 1
    in_a = True                                       # where the current order lives: (ua, idx) or (ub, ib)
    for d in range(3):
        if hist[d].max() == n:                        # one digit value: the pass keeps the order
            continue
        if in_a:
            _radix_pass(ua, idx, ub, ib, n, 11 * d, hist[d])
        else:
            _radix_pass(ub, ib, ua, idx, n, 11 * d, hist[d])
        in_a = not in_a
    if not in_a:
        idx[:n] = ib[:n]


@kernel
def _nms_sort_classes(prob_t, order, total, classes, indptr, indices):
    """do_nms_sort's per-class loop over prob_t (classes, n): qsort the live records by prob[k], then the greedy
    pass (each record with prob[k] != 0 zeroes prob[k] of the later records its IoU exceeds thresh with)."""
    n = order.shape[0]
    seen = np.empty(n, np.bool_)
    key = np.empty(total, np.float32)
    tkey = np.empty(total, np.float32)
    tidx = np.empty(total, np.int64)
    ua = np.empty(total, np.uint32)
    ub = np.empty(total, np.uint32)
    for k in range(classes):
        p = prob_t[k]
        live = False
        has_nan = False
        for i in range(total):
            v = p[order[i]]
            key[i] = v
            if v != 0:
                live = True
            if np.isnan(v):
                has_nan = True
        if not live:          # every key compares equal: the merge sort keeps the order, and nothing is kept
            continue
        if has_nan:
            _msort(key, order, total, tkey, tidx)
        else:
            _radix_sort_desc(key, order, total, ua, ub, tidx)
        # greedy pass; the graph only links live records, so "not seen yet" is "later in this order"
        seen[:] = False
        for i in range(total):
            a = order[i]
            seen[a] = True
            if p[a] == 0:
                continue
            for e in range(indptr[a], indptr[a + 1]):
                b = indices[e]
                if not seen[b]:
                    p[b] = 0


@kernel
def _nms_obj_pass(objectness, prob, order, total, classes, indptr, indices):
    """do_nms_obj after the swap loop: qsort by objectness, then suppress objectness and every prob."""
    n = order.shape[0]
    key = np.empty(total, np.float32)
    tkey = np.empty(total, np.float32)
    tidx = np.empty(total, np.int64)
    for i in range(total):
        key[i] = objectness[order[i]]
    _msort(key, order, total, tkey, tidx)
    pos = np.full(n, -1, np.int64)
    for i in range(total):
        pos[order[i]] = i
    for i in range(total):
        a = order[i]
        if objectness[a] == 0:
            continue
        for e in range(indptr[a], indptr[a + 1]):
            b = indices[e]
            if pos[b] > i and objectness[b] != 0:
                objectness[b] = 0
                for k in range(classes):
                    prob[b, k] = 0


def _live_graph(dets, order, total, thresh):
    ids = np.ascontiguousarray(order[:total])
    if thresh >= 0:
        return _overlap_graph(dets.bbox, ids, thresh)
    if thresh < 0:
        return _dense_graph(dets.bbox, ids, thresh)
    return np.zeros(len(dets) + 1, np.int64), np.zeros(0, np.int64)     # NaN thresh: nothing is ever > it


def do_nms_sort(dets, classes, thresh):
    """box.c do_nms_sort, in place: reorders the records and zeroes suppressed class probabilities.

    Records with objectness == 0 are first swapped to the end (darknet's swap loop, not a stable partition) and
    take no further part. Then, class by class, the live records are sorted by prob[k] (descending, stable, glibc's
    merge sort) and each one whose prob[k] != 0 zeroes prob[k] of every later record with IoU > thresh.
    sort_class of the live records ends at classes-1, as darknet leaves it.
    """
    classes = int(classes)
    if classes > dets.prob.shape[1]:
        raise ValueError(f"classes={classes} but the records hold {dets.prob.shape[1]} probabilities")
    thresh = _F32(thresh)
    order, total = _zero_objectness_to_end(dets.objectness)
    if classes > 0 and total > 0:
        indptr, indices = _live_graph(dets, order, total, thresh)
        prob_t = np.ascontiguousarray(dets.prob[:, :classes].T)     # one class per row: the sorts read rows
        _nms_sort_classes(prob_t, order, total, classes, indptr, indices)
        dets.prob[:, :classes] = prob_t.T
    dets.permute(order)
    if classes > 0:
        dets.sort_class[:total] = classes - 1


def do_nms_obj(dets, classes, thresh):
    """box.c do_nms_obj, in place: the same swap loop, one sort by objectness (sort_class = -1 on live records), and
    each kept record zeroes objectness and prob[0:classes] of later live records with IoU > thresh."""
    classes = int(classes)
    if classes > dets.prob.shape[1]:
        raise ValueError(f"classes={classes} but the records hold {dets.prob.shape[1]} probabilities")
    thresh = _F32(thresh)
    order, total = _zero_objectness_to_end(dets.objectness)
    if total > 0:
        indptr, indices = _live_graph(dets, order, total, thresh)
        _nms_obj_pass(dets.objectness, dets.prob, order, total, classes, indptr, indices)
    dets.permute(order)
    dets.sort_class[:total] = -1
