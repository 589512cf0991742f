"""`pydarknet detector test|train|valid|recall|map|demo|calc_anchors`, `detect` and Darknet's v1 `yolo`: their
words (detector/ runs them, one module a verb)."""
import os
import sys

from ..errors import UsageError
from .args import check_order, fraction, training_flags, verb_of

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


# each verb's words after it: its usage line, and `detector --help`'s list of verbs
USAGES = {"test": "DATA CFG WEIGHTS [IMG] [-thresh T] [-hier H] [-out result.json] [-ext_output] [-save_labels]",
          "train": "DATA CFG [WEIGHTS] [-clear] [-map] [-map_every K] [-seed K] [-max_batches N] [-workers N] "
                   "[-chart FILE] [-sync allreduce|darknet] [-grad_stats N] [-tracker tensorboard|mlflow]   (-map: "
                   "mAP@0.5 and the validation loss every 4 epochs, at least 100 iterations apart, and at the end; "
                   "-map_every K: every K iterations; -tracker: metrics.jsonl's numbers to TensorBoard or MLflow too)",
          "valid": "DATA CFG WEIGHTS [-out PREFIX]",
          "recall": "DATA CFG WEIGHTS",
          "map": "DATA CFG WEIGHTS [-thresh T] [-iou_thresh I]",
          "demo": "DATA CFG WEIGHTS [VIDEO] [-c N] [-out_filename OUT.avi|OUT.mp4] [-thresh T] [-hier H] "
                  "[-ext_output]",
          "calc_anchors": "DATA -width W -height H [-num_of_clusters K] [-show] [-seed S]"}
# Darknet's v1 verbs: detector's on cfg/voc.data, so their lines name no DATA
YOLO_USAGES = {verb: USAGES[verb].replace("DATA ", "", 1) + "   (on cfg/voc.data)" for verb in ("train", "test",
                                                                                               "valid")}
DETECT_USAGE = "usage: pydarknet detect CFG WEIGHTS [IMG] [-thresh T] [-out result.json] [-ext_output] [-save_labels]"


def detector(args):
    return VERBS[verb_of(args, "detector", USAGES)](args)


def usage_line(args, verb):
    """The verb's usage line, as `yolo VERB` where the line is yolo's."""
    if args.name == "yolo":
        return f"usage: pydarknet yolo {verb} {YOLO_USAGES[verb]}"
    return f"usage: pydarknet detector {verb} {USAGES[verb]}"


def operands(args, least, kinds=("data", "cfg", "weights")):
    """The words after the verb, DATA first (yolo put cfg/voc.data there): their order checked (args.check_order),
    then their count (at least `least`), else the verb's usage line."""
    usage = usage_line(args, args.positional(0))
    words = args.argv[1:]
    yolo = args.name == "yolo"
    check_order(words[1:] if yolo else words, kinds[1:] if yolo else kinds, usage)
    if len(words) < least:
        raise UsageError(usage)
    return words


def test(args):
    """detector test (detector/test.py)."""
    thresh = args.value("-thresh", .5, fraction)
    hier = args.value("-hier", .5, fraction)
    outfile = args.value("-out", None)
    ext_output = args.flag("-ext_output")
    save_labels = args.flag("-save_labels")
    args.flag("-dont_show")          # no window is ever opened; accepted for AlexeyAB's scripts
    args.flag("-fullscreen")
    data, cfg, weights, *image = operands(args, 3)
    from ..detector.test import detect_images
    return detect_images(data, cfg, weights, (image or [None])[0], thresh, hier, outfile, ext_output, save_labels)


def evaluate(args):
    """detector valid | recall (detector/valid.py) | map (detector/map.py)."""
    verb = args.positional(0)
    outfile = args.value("-out", None) if verb == "valid" else None
    thresh = args.value("-thresh", .25, fraction) if verb == "map" else None
    iou_thresh = args.value("-iou_thresh", .5, fraction) if verb == "map" else None
    args.flag("-dont_show")
    data, cfg, weights = operands(args, 3)[:3]
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
    data, cfg, *weights = operands(args, 2)
    from ..detector.train import train_detector
    train_detector(data, cfg, (weights or [None])[0], calc_map=calc_map, **flags)
    return 0


def calc_anchors(args):
    """`detector calc_anchors DATA -width W -height H [-num_of_clusters K] [-show] [-seed S]` (detector/anchors.py)."""
    clusters = args.value("-num_of_clusters", 5, int)
    width = args.value("-width", None, int)
    height = args.value("-height", None, int)
    show = args.flag("-show")
    seed = args.value("-seed", 0, int)
    words = operands(args, 0, ("data",))
    usage = usage_line(args, "calc_anchors")
    if not words or width is None or height is None:
        raise UsageError(f"{usage} (-width and -height are required)" if words else usage)
    if width <= 0 or height <= 0 or clusters <= 0:
        raise UsageError("calc_anchors: -width, -height and -num_of_clusters must be positive")
    from ..detector.anchors import calc_anchors
    calc_anchors(words[0], clusters, width, height, show, seed)
    return 0


def demo(args):
    """`detector demo DATA CFG WEIGHTS [VIDEO] [-c N] [-out_filename OUT] ...` (detector/demo.py)."""
    camera = args.value("-c", 0, int)
    out_filename = args.value("-out_filename", None)
    thresh = args.value("-thresh", .5, fraction)
    hier = args.value("-hier", .5, fraction)
    ext_output = args.flag("-ext_output")
    args.flag("-dont_show")          # no window is ever opened; accepted for AlexeyAB's scripts
    data, cfg, weights, *video = operands(args, 3)
    from ..detector.demo import run_demo
    run_demo(data, cfg, weights, video[0] if video else camera, out_filename, thresh, hier, ext_output)
    return 0


VERBS = {"test": test, "train": train, "valid": evaluate, "recall": evaluate, "map": evaluate, "demo": demo,
         "calc_anchors": calc_anchors}


def detect(args):
    """`detect CFG WEIGHTS [IMG]`: detector test on cfg/coco.data."""
    thresh = args.value("-thresh", .5, fraction)
    outfile = args.value("-out", None)
    ext_output = args.flag("-ext_output")
    save_labels = args.flag("-save_labels")
    args.flag("-dont_show")
    check_order(args.argv, ("cfg", "weights"), DETECT_USAGE)
    if len(args.argv) < 2:
        raise UsageError(DETECT_USAGE)
    cfg, weights = args.argv[:2]
    data = default_data("coco.data")
    from ..detector.test import detect_images
    return detect_images(data, cfg, weights, args.positional(2), thresh, .5, outfile, ext_output, save_labels)


def yolo(args):
    """Darknet's `yolo train|test|valid` (v1), which hard-code their data paths: here cfg/voc.data."""
    verb_of(args, "yolo", YOLO_USAGES)
    data = default_data("voc.data")
    args.argv[1:1] = [data]
    return detector(args)
