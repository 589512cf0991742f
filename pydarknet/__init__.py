"""pydarknet: Darknet's YOLO v1-v3 in Python, with Darknet's cfg and weights files and its numbers.

Three ways in:
- libdarknet's names: parse_network_cfg, load_network, load_weights, save_weights, set_batch_network,
  network_predict, load_image_color, letterbox_image, get_network_boxes, do_nms_sort, do_nms_obj;
- darknet.py's: load_net, load_meta, detect;
- a typed one: Detector(cfg, weights, names=...).detect(image) -> [Detection, ...].
"""
import os

# Two sets of threads share the cores: Numba's (OpenMP) for the kernels and backend/threads.py's for the GEMM pieces
# (BLAS itself runs on one thread; OpenBLAS's own pool matters where a program raises that again). Idle OpenMP or
# OpenBLAS threads would spin and starve the others, so both are told to sleep soon. This works when pydarknet is
# imported before numpy has loaded OpenBLAS and before the first Numba kernel runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")   # 2^4 cycles of spinning, Darknet-like single passes

from .detector import Detection, Detector, load_network  # noqa: E402
from .errors import CfgError, DarknetError, ImageError, WeightsError
from .image import letterbox_image, load_image_color
from .libdarknet import (Metadata, backward_network, detect, do_nms_obj, do_nms_sort, forward_network,  # noqa: E402
                         get_current_batch, get_current_rate, get_network_boxes, load_meta, load_net,
                         network_predict, parse_network_cfg, set_batch_network, train_network_datum,
                         update_network)
from .network import Network
from .weights import load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "CfgError", "DarknetError", "Detection", "Detector", "ImageError", "Metadata", "Network", "WeightsError",
    "detect", "do_nms_obj", "do_nms_sort", "get_network_boxes", "letterbox_image", "load_image_color",
    "load_meta", "load_net", "load_network", "load_weights", "network_predict", "parse_network_cfg",
    "save_weights", "set_batch_network", "forward_network", "backward_network", "update_network",
    "train_network_datum", "get_current_rate", "get_current_batch",
]
