"""Detection end to end: image -> letterbox -> network -> boxes -> NMS, and the typed `Detector` API."""
import dataclasses
import os
import time

import numpy as np

from ..cfg import read_data, read_names
from ..errors import DarknetError
from ..image import image_from_array, letterbox_image, load_image_color, resize_image
from ..network import load_network
from ..nms import do_nms_sort


def class_count(net):
    """The number of classes of the network's last detection layer (Darknet reads l.classes of the last layer)."""
    for layer in reversed(net.layers):
        if hasattr(layer, "detections"):
            return layer.classes
    raise DarknetError(f"{net.path}: the network has no yolo, region or detection layer, so it cannot detect")


def _is_v1(net):
    return net.layers[-1].type == "detection"


def network_input(net, im):
    """The image as the network wants it: letterboxed for v2/v3; v1 (Darknet's `yolo test`) resizes instead."""
    return resize_image(im, net.w, net.h) if _is_v1(net) else letterbox_image(im, net.w, net.h)


def network_boxes(net, im, thresh, hier=.5, nms=.45, batch_index=0, heads=None):
    """Boxes relative to the image, NMS'd (do_nms_sort), from the network's last forward pass (or from `heads`,
    a net.head_snapshot() of an earlier one)."""
    if _is_v1(net):   # the v1 head scales its boxes by the size it is given: 1 x 1 keeps them relative
        dets = net.detections(1, 1, thresh, hier, batch_index=batch_index, heads=heads)
    else:
        dets = net.detections(im.shape[2], im.shape[1], thresh, hier, batch_index=batch_index, heads=heads)
    if nms:
        do_nms_sort(dets, class_count(net), nms)
    return dets


def detect_image(net, im, thresh=.5, hier=.5, nms=.45):
    """Darknet's test_detector on one image (C, H, W): returns the NMS'd detections and the seconds predicted."""
    sized = network_input(net, im)
    start = time.perf_counter()
    net.predict(sized)
    seconds = time.perf_counter() - start
    return network_boxes(net, im, thresh, hier, nms), seconds


def names_from(path_or_list, classes):
    """Class names from a list, a .names file or a .data file (its `names=`); numbers when none are given."""
    if path_or_list is None:
        return [str(i) for i in range(classes)]
    if isinstance(path_or_list, (list, tuple)):
        return list(path_or_list)
    path = os.fsdecode(path_or_list)
    if path.endswith(".data"):
        return read_names(read_data(path).file_of("names", "data/names.list"))
    return read_names(path)


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detected object: class, confidence and its box in pixels (centre x, y and size w, h)."""
    name: str
    class_id: int
    confidence: float
    x: float
    y: float
    w: float
    h: float

    @property
    def box(self):
        return self.x, self.y, self.w, self.h

    @property
    def corners(self):
        """(left, top, right, bottom) in pixels."""
        return self.x - self.w / 2, self.y - self.h / 2, self.x + self.w / 2, self.y + self.h / 2


class Detector:
    """The typed API: `Detector(cfg, weights, names=...)`, then `.detect(image)` -> list of Detection.

    `image` is a path, an HxWx3 uint8 BGR array (what OpenCV gives) or a float (3, H, W) RGB image in [0, 1].
    Detections are sorted by confidence; a box above threshold in several classes gives one record per class.
    """

    def __init__(self, cfg, weights, names=None, thresh=.5, hier_thresh=.5, nms=.45):
        self.net = load_network(cfg, weights)
        self.classes = class_count(self.net)
        self.names = names_from(names, self.classes)
        if len(self.names) < self.classes:
            raise DarknetError(f"{names}: {len(self.names)} class names for a network of {self.classes} classes")
        self.thresh, self.hier_thresh, self.nms = thresh, hier_thresh, nms

    def _image(self, image):
        if isinstance(image, (str, os.PathLike)):
            return load_image_color(image)
        array = np.asarray(image)
        if array.dtype == np.uint8:
            return image_from_array(array)
        if array.ndim == 3 and array.shape[0] == 3:
            return array.astype(np.float32, copy=False)
        raise DarknetError(f"cannot detect on an array of shape {array.shape} and type {array.dtype}: give a path, "
                           f"an HxWx3 uint8 BGR image or a 3xHxW float RGB image")

    def _records(self, dets, img_w, img_h):
        records = []
        for det in dets:
            x, y, w, h = (float(v) for v in det.bbox)
            for k in np.flatnonzero(det.prob[:self.classes] > 0):
                records.append(Detection(self.names[k], int(k), float(det.prob[k]),
                                         x * img_w, y * img_h, w * img_w, h * img_h))
        return sorted(records, key=lambda r: -r.confidence)

    def detect(self, image):
        im = self._image(image)
        dets, _ = detect_image(self.net, im, self.thresh, self.hier_thresh, self.nms)
        return self._records(dets, im.shape[2], im.shape[1])

    def detect_batch(self, images):
        """Detect on many images in one network pass; returns one list of Detection per image."""
        ims = [self._image(image) for image in images]
        if not ims:
            return []
        self.net.predict(np.stack([network_input(self.net, im) for im in ims]))
        return [self._records(network_boxes(self.net, im, self.thresh, self.hier_thresh, self.nms, batch_index=i),
                              im.shape[2], im.shape[1]) for i, im in enumerate(ims)]
