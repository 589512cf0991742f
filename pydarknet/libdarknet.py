"""libdarknet's C names and darknet.py's Python names, for people porting code that uses them."""
import dataclasses
import os

import numpy as np

from . import nms
from .backend import to_host
from .cfg import read_data, read_names
from .detector.pipeline import class_count, network_boxes, network_input
from .network import load_network
from .image import load_image_color
from .network import parse_network_cfg  # noqa: F401  (re-exported)
from .weights import load_weights, save_weights  # noqa: F401  (re-exported)


def set_batch_network(net, b):
    """Darknet's set_batch_network: the batch size training steps use (inference follows the input's batch)."""
    net.batch = int(b)


def network_predict(net, x):
    """Inference on a float32 (C, H, W) image or (B, C, H, W) batch; the output layer's output, on the host (as
    Darknet's GPU build copies it back)."""
    return to_host(net.predict(np.asarray(x, np.float32)))


def get_network_boxes(net, w, h, thresh, hier=.5, map=None, relative=1, batch_index=0):
    """The detection records of the last forward pass for an image of w x h pixels (relative=1: boxes in 0..1)."""
    if map is not None:
        raise NotImplementedError("class maps (Darknet's `map`) are not supported")
    return net.detections(w, h, thresh, hier, bool(relative), batch_index)


def forward_network(net):
    """Darknet's forward_network on net.input (training mode when net.train is set, with net.truth)."""
    return net.forward(net.input)


def backward_network(net):
    net.backward()


def update_network(net):
    net.update()


def train_network_datum(net, x=None, truth=None):
    """One whole training step (seen, forward, backward, update at the subdivision boundary); the cost.
    With no arguments it takes net.input and net.truth, as the C function does."""
    return net.train_datum(net.input if x is None else x, net.truth if truth is None else truth)


def get_current_rate(net):
    return net.current_rate()


def get_current_batch(net):
    return net.current_batch()


do_nms_sort = nms.do_nms_sort
do_nms_obj = nms.do_nms_obj


# ---- darknet.py ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Metadata:
    """darknet.py's METADATA: the class count and names of a .data file."""
    classes: int
    names: list


def load_net(cfg, weights, clear=0):
    return load_network(cfg, weights, clear)


def load_meta(data):
    options = read_data(data)
    names = read_names(options.file_of("names", "data/names.list"))
    return Metadata(options.int("classes", len(names)), names)


def detect(net, meta, image, thresh=.5, hier_thresh=.5, nms=.45):
    """darknet.py's detect: [(name, prob, (x, y, w, h)), ...] sorted by prob, boxes in pixels (centre, size)."""
    im = load_image_color(os.fsdecode(image))
    net.predict(network_input(net, im))
    img_h, img_w = im.shape[1:]
    dets = network_boxes(net, im, thresh, hier_thresh, nms=0)
    if nms:
        do_nms_obj(dets, class_count(net), nms)
    result = []
    for det in dets:
        x, y, w, h = (float(v) for v in det.bbox)
        for i in range(meta.classes):
            if det.prob[i] > 0:
                result.append((meta.names[i], float(det.prob[i]), (x * img_w, y * img_h, w * img_w, h * img_h)))
    return sorted(result, key=lambda r: -r[1])
