"""pydarknet: Darknet's YOLO v1-v3 in Python, with Darknet's cfg and weights files and its numbers.

Three ways in:
- libdarknet's names: parse_network_cfg, load_network, load_weights, save_weights, set_batch_network,
  network_predict, load_image_color, letterbox_image, get_network_boxes, do_nms_sort, do_nms_obj;
- darknet.py's: load_net, load_meta, detect;
- a typed one: Detector(cfg, weights, names=...).detect(image) -> [Detection, ...].
"""
import os

# Numba's threads (OpenMP) run the kernels and, through backend/cpu/sgemm.py, the GEMM pieces of an inference pass.
# Between two parallel regions an idle one spins a bounded while before it sleeps (GOMP_SPINCOUNT: a spin is one
# `pause`, 30-60 ns, so PYDARKNET_SPIN_US's 1000 us gives 15,000 spins, 0.45-0.9 ms): waking a sleeping thread costs
# 70-100 us on a small VM, and a pass starts a region every few hundred microseconds. Ranks sharing the cores get
# 0 (cli.start_world). OpenBLAS's own threads (BLAS runs on one) sleep soon. This works when pydarknet is imported
# before numpy loads OpenBLAS and before Numba starts its threads (libgomp reads the variables once).
if "OMP_WAIT_POLICY" not in os.environ:
    _spin_us = os.environ.get("PYDARKNET_SPIN_US", "1000")
    os.environ.setdefault("GOMP_SPINCOUNT", str(15 * max(0, int(_spin_us))) if _spin_us.isdigit() else "15000")
    del _spin_us
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")   # 2^4 cycles of spinning, Darknet-like single passes

# The names below are loaded when first used (PEP 562), so that `import pydarknet` and the command line load only
# what they use: the detect verb never loads the training code, and nothing here loads Numba.
_HOMES = {
    "detector.pipeline": ["Detection", "Detector"],
    "errors": ["CfgError", "DarknetError", "ImageError", "WeightsError"],
    "image": ["letterbox_image", "load_image_color"],
    "libdarknet": ["Metadata", "backward_network", "detect", "do_nms_obj", "do_nms_sort", "forward_network",
                   "get_current_batch", "get_current_rate", "get_network_boxes", "load_meta", "load_net",
                   "network_predict", "parse_network_cfg", "set_batch_network", "train_network_datum",
                   "update_network"],
    "network": ["Network", "load_network"],
    "weights": ["load_weights", "save_weights"],
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name):
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'pydarknet' has no attribute '{name}'")
    import importlib
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__():
    import sys
    return sorted(set(vars(sys.modules[__name__])) | set(_HOME_OF))


__version__ = "0.1.0"

__all__ = sorted(_HOME_OF)
