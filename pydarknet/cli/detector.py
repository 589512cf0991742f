"""`pydarknet detector test|train|valid|recall|map|demo|calc_anchors`, `detect` and Darknet's v1 `yolo`: their
words (detector/ runs them, one module a verb)."""
import os
import sys

from ..errors import UsageError
from .args import training_flags

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `detect` reads cfg/coco.data and `yolo` cfg/voc.data, as Darknet's do from its own folder: the working folder's
# cfg/ when it has them, else the copy an installed package carries (setup.py's build puts it in
# pydarknet/defaults/cfg/, the names files in defaults/data/), else the repository's cfg/ beside the package
DEFAULTS_FOLDER = os.path.join(PACKAGE, "defaults", "cfg")
CFG_FOLDER = os.path.join(os.path.dirname(PACKAGE), "cfg")


def default_data(name):
    """The path of the .data file `name` (coco.data, voc.data) that `detect` and `yolo` read."""
    for folder in ("cfg", DEFAULTS_FOLDER, CFG_FOLDER):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return os.path.join(CFG_FOLDER, name)


def detector(args):
    verb = args.positional(0)
    if verb in ("valid", "recall", "map"):
        return evaluate(verb, args)
    if verb == "train":
        return train(args)
    if verb == "calc_anchors":
        return calc_anchors(args)
    if verb == "demo":
        return demo(args)
    if verb != "test":
        raise UsageError(f"unknown detector command '{verb}' (pydarknet -h lists the commands)")
    return test(args)


def test(args):
    """detector test (detector/test.py)."""
    thresh = args.value("-thresh", .5, float)
    hier = args.value("-hier", .5, float)
    outfile = args.value("-out", None)
    ext_output = args.flag("-ext_output")
    save_labels = args.flag("-save_labels")
    args.flag("-dont_show")          # no window is ever opened; accepted for AlexeyAB's scripts
    args.flag("-fullscreen")
    if len(args.argv) < 4:
        raise UsageError("usage: pydarknet detector test DATA CFG WEIGHTS [IMG] [-thresh T] [-save_labels]")
    data, cfg, weights = args.argv[1:4]
    from ..detector.test import detect_images
    return detect_images(data, cfg, weights, args.positional(4), thresh, hier, outfile, ext_output, save_labels)


def evaluate(verb, args):
    """detector valid | recall (detector/valid.py) | map (detector/map.py)."""
    outfile = args.value("-out", None)
    thresh = args.value("-thresh", .25, float)
    iou_thresh = args.value("-iou_thresh", .5, float)
    args.flag("-dont_show")
    if len(args.argv) < 4:
        raise UsageError(f"usage: pydarknet detector {verb} DATA CFG WEIGHTS")
    data, cfg, weights = args.argv[1:4]
    if verb == "valid":
        from ..detector.valid import validate_detector
        for path in validate_detector(data, cfg, weights, outfile):
            print(f"Saved {path}", file=sys.stderr)
    elif verb == "recall":
        from ..detector.valid import validate_detector_recall
        validate_detector_recall(data, cfg, weights)
    else:
        from ..detector.map import detector_map
        detector_map(data, cfg, weights, thresh, iou_thresh)
    return 0


def train(args):
    """detector train (detector/train.py)."""
    calc_map = args.flag("-map")
    flags = training_flags(args)
    if len(args.argv) < 3:
        raise UsageError("usage: pydarknet detector train DATA CFG [WEIGHTS] [-clear] [-map]")
    data, cfg = args.argv[1:3]
    from ..detector.train import train_detector
    train_detector(data, cfg, args.positional(3), calc_map=calc_map, **flags)
    return 0


def calc_anchors(args):
    """`detector calc_anchors DATA -width W -height H [-num_of_clusters K] [-show] [-seed S]` (detector/anchors.py)."""
    clusters = args.value("-num_of_clusters", 5, int)
    width = args.value("-width", None, int)
    height = args.value("-height", None, int)
    show = args.flag("-show")
    seed = args.value("-seed", 0, int)
    datacfg = args.positional(1)
    usage = "usage: pydarknet detector calc_anchors DATA -width W -height H [-num_of_clusters K] [-show] [-seed S]"
    if datacfg is None or width is None or height is None:
        raise UsageError(f"{usage} (-width and -height are required)" if datacfg else usage)
    if width <= 0 or height <= 0 or clusters <= 0:
        raise UsageError("calc_anchors: -width, -height and -num_of_clusters must be positive")
    from ..detector.anchors import calc_anchors
    calc_anchors(datacfg, clusters, width, height, show, seed)
    return 0


def demo(args):
    """`detector demo DATA CFG WEIGHTS [VIDEO] [-c N] [-out_filename OUT] ...` (detector/demo.py)."""
    camera = args.value("-c", 0, int)
    out_filename = args.value("-out_filename", None)
    thresh = args.value("-thresh", .5, float)
    hier = args.value("-hier", .5, float)
    ext_output = args.flag("-ext_output")
    args.flag("-dont_show")          # no window is ever opened; accepted for AlexeyAB's scripts
    if len(args.argv) < 4:
        raise UsageError("usage: pydarknet detector demo DATA CFG WEIGHTS [VIDEO] [-c N] [-out_filename OUT]")
    data, cfg, weights = args.argv[1:4]
    video = args.positional(4)
    from ..detector.demo import run_demo
    run_demo(data, cfg, weights, video if video is not None else camera, out_filename, thresh, hier, ext_output)
    return 0


def detect(args):
    """`detect CFG WEIGHTS [IMG]`: detector test on cfg/coco.data."""
    thresh = args.value("-thresh", .5, float)
    outfile = args.value("-out", None)
    ext_output = args.flag("-ext_output")
    save_labels = args.flag("-save_labels")
    args.flag("-dont_show")
    if len(args.argv) < 2:
        raise UsageError("usage: pydarknet detect CFG WEIGHTS [IMG] [-thresh T] [-save_labels]")
    cfg, weights = args.argv[:2]
    data = default_data("coco.data")
    from ..detector.test import detect_images
    return detect_images(data, cfg, weights, args.positional(2), thresh, .5, outfile, ext_output, save_labels)


def yolo(args):
    """Darknet's `yolo train|test|valid` (v1), which hard-code their data paths: here cfg/voc.data."""
    verb = args.positional(0)
    if verb not in ("train", "test", "valid"):
        raise UsageError("usage: pydarknet yolo train|test|valid CFG [WEIGHTS] [IMG]")
    data = default_data("voc.data")
    args.argv[1:1] = [data]
    return detector(args)
