"""pydarknet: Darknet's YOLO v1-v3 in Python, with Darknet's cfg and weights files and its numbers.

Three ways in:
- libdarknet's names: parse_network_cfg, load_network, load_weights, save_weights, set_batch_network,
  network_predict, load_image_color, letterbox_image, get_network_boxes, do_nms_sort, do_nms_obj;
- darknet.py's: load_net, load_meta, detect;
- a typed one: Detector(cfg, weights, names=...).detect(image) -> [Detection, ...].
"""
from .detector import Detection, Detector, load_network
from .errors import CfgError, DarknetError, ImageError, WeightsError
from .image import letterbox_image, load_image_color
from .libdarknet import (Metadata, detect, do_nms_obj, do_nms_sort, get_network_boxes, load_meta, load_net,
                         network_predict, parse_network_cfg, set_batch_network)
from .network import Network
from .weights import load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "CfgError", "DarknetError", "Detection", "Detector", "ImageError", "Metadata", "Network", "WeightsError",
    "detect", "do_nms_obj", "do_nms_sort", "get_network_boxes", "letterbox_image", "load_image_color",
    "load_meta", "load_net", "load_network", "load_weights", "network_predict", "parse_network_cfg",
    "save_weights", "set_batch_network",
]
