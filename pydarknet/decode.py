"""Decoding the three output layers into detection records: Darknet's get_yolo_detections, get_region_detections
and get_detection_detections, with correct_yolo_boxes / correct_region_boxes, in get_network_boxes' record layout.

Arithmetic follows the C source: float32 where C computes in float, float64 where C promotes to double (`exp()`,
`pow()` and the `2.` literals of the letterbox correction), rounding to float32 where C stores into a float. The
goldens come from an -Ofast build, whose reassociations differ from the source by an ulp here and there (the
letterbox factor 96/72 comes out 1.3333333 there, 1.3333334 here); those are not reproduced.
"""
import numpy as np

from .box import Detections


_F32 = np.float32

__all__ = ["yolo_detections", "yolo_num_detections", "region_detections", "detection_detections", "correct_yolo_boxes"]


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


def correct_yolo_boxes(bbox, img_w, img_h, net_w, net_h, relative=True, letter=True):
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
    correct_yolo_boxes(bbox, img_w, img_h, net_w, net_h, relative, letter)
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
    correct_yolo_boxes(bbox, img_w, img_h, net_w, net_h, relative, letter)
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
