"""`pydarknet dataset check DATA [CFG] [-fast]`: the label mistakes that silently spoil a training run, one line each.

The `train` and `valid` lists of a .data file are read with the label rule the CFG's head implies (YOLOv1's
[detection] reads labels as fill_truth_region does; without a CFG, the detection rule). Each problem is one line
naming the image, the label file and its line; then a summary by kind, and AlexeyAB's lists in the current folder:
`bad.list` (images that cannot be read, label files that cannot be opened, one path a line) and `bad_label.list`
(`LABELPATH "reason"`). With a CFG, a head ([yolo], [region], [detection]) whose `classes=` differs from the
.data file's is a problem too (`classes_mismatch`, which detector train refuses and detection warns of). The exit
status is 1 on any problem, 0 when the lists are clean.
"""
import collections
import os
import sys
import warnings

from tqdm import tqdm

from .. import files
from ..cfg import read_cfg, read_data
from .labels import DataWarning, label_path, parse_boxes, plural, read_list
from ..errors import DarknetError

HEADS = {"yolo": "detection", "region": "detection", "detection": "region"}     # head section -> label rule
HEAD_CLASSES = {"yolo": 20, "region": 20, "detection": 1}       # each head's default classes=, as Darknet parses it
CLASSES_DIFFER = "classes differ from the .data file's"
BAD_LIST, BAD_LABEL_LIST = "bad.list", "bad_label.list"


class Problem(collections.namedtuple("Problem", "kind image label line reason")):
    """One mistake: its kind (the summary's key), where it is, and what is wrong."""

    def __str__(self):
        where = self.label if self.line is None else f"{self.label}:{self.line}"
        return f"{self.image}: {where + ': ' if self.label else ''}{self.reason}"


def label_rule(cfgfile):
    """data.label_path's kind for the network's head: "region" for [detection], else "detection"."""
    if cfgfile is None:
        return "detection"
    heads = [HEADS[s.name] for s in read_cfg(cfgfile) if s.name in HEADS]
    return heads[-1] if heads else "detection"


def classes_mismatch(options, cfgfile):
    """(where, reason) for the first head of the cfg whose classes= differs from the .data file's `options`
    (a cfg.DataConfig); None when they agree or the .data file has no classes=."""
    if cfgfile is None or "classes" not in options:
        return None
    classes = options.int("classes")
    for section in read_cfg(cfgfile):
        if section.name in HEAD_CLASSES:
            head = section.int("classes", HEAD_CLASSES[section.name])
            if head != classes:
                given = f"classes={head}" if section.has("classes") else f"classes={head} (the default)"
                return (f"{section.path}:{section.lines.get('classes', section.line)}",
                        f"[{section.name}] {given}, but {options.where('classes')} has classes={classes}")
    return None


def warn_classes_mismatch(options, cfgfile):
    """Detection's word on a mismatch: a warning (a COCO model may run with a names file of one's own)."""
    mismatch = classes_mismatch(options, cfgfile)
    if mismatch:
        warnings.warn(f"{': '.join(mismatch)} (detection goes by the cfg)", DataWarning, stacklevel=3)


def _box_problems(image, label, boxes, numbers):
    """The coordinates the loader drops or Darknet misreads: x or y outside [0, 1] or both 0, w or h <= 0 or > 1."""
    for (x, y, w, h, _), number in zip(boxes.tolist(), numbers):
        if not (0 <= x <= 1 and 0 <= y <= 1):
            yield Problem("x or y outside [0, 1]", image, label, number, f"x {x:g}, y {y:g} outside [0, 1]")
        elif x == 0 and y == 0:
            yield Problem("x and y both 0", image, label, number, "x and y are both 0 (the loader drops the box)")
        if not (0 < w <= 1 and 0 < h <= 1):
            yield Problem("w or h <= 0 or > 1", image, label, number, f"w {w:g}, h {h:g} not in (0, 1]")


def check_image(image, classes, kind="detection", fast=False):
    """The problems of one listed image and its label file."""
    import cv2
    if not os.path.isfile(image):
        return [Problem("image missing", image, None, None, "the image is missing")]
    problems = []
    if not fast and cv2.imread(image) is None:
        problems.append(Problem("image unreadable", image, None, None, "the image cannot be decoded"))
    label = label_path(image, kind)
    if label == image:
        return problems + [Problem("label file missing", image, label, None,
                                   "no label file: label_path knows no rule for this extension")]
    boxes, messages, numbers = parse_boxes(label, classes, line_numbers=True)
    for message in messages:
        if message.startswith("Couldn't"):
            problems.append(Problem("label file missing", image, label, None, "the label file cannot be opened"))
            continue
        where, reason = message.split(": ", 1)
        reason = reason.rsplit("; ", 1)[0]
        kind_of = "class id out of range" if "out of range" in reason else "not five numbers"
        problems.append(Problem(kind_of, image, label, int(where.rsplit(":", 1)[1]), reason))
    return problems + list(_box_problems(image, label, boxes, numbers))


def check_lists(datacfg, cfgfile=None, fast=False, out=sys.stdout, progress=True, keys=("train", "valid")):
    """Every problem of the .data file's train and valid lists (a list named twice is read once), printed one a
    line to `out` (None: not printed); bad.list and bad_label.list are written when they have lines. Returns the
    problems."""
    options = read_data(datacfg)
    classes = options.int("classes")
    kind = label_rule(cfgfile)
    mismatch = classes_mismatch(options, cfgfile)
    problems = [Problem(CLASSES_DIFFER, mismatch[0], None, None, mismatch[1])] if mismatch else []
    if problems and out is not None:
        print(problems[0], file=out)
    lists = dict.fromkeys(options.path_of(key, None) for key in keys if options.get(key))
    if not lists:
        raise DarknetError(f"{datacfg}: names no train= or valid= list")
    images = dict.fromkeys(image for path in lists for image in read_list(path))
    if not images:
        raise DarknetError(f"{', '.join(lists)}: the lists name no images")
    for image in tqdm(images, desc="checking", unit=" images", file=sys.stderr, disable=None if progress else True,
                      leave=False):
        for problem in check_image(image, classes, kind, fast):
            if out is not None:
                print(problem, file=out)
            problems.append(problem)
    bad = [p.label if p.kind == "label file missing" else p.image for p in problems
           if p.kind in ("image missing", "image unreadable", "label file missing")]
    bad_labels = [f'{p.label} "{p.reason}"' for p in problems if p.line is not None]
    for name, lines in ((BAD_LIST, bad), (BAD_LABEL_LIST, bad_labels)):
        if lines:
            files.write_lines(name, lines)
    return problems


def summary(problems, fast):
    """The closing lines: counts by kind and where the lists went."""
    if not problems:
        return f"no problems{' (images not decoded: -fast)' if fast else ''}"
    counts = collections.Counter(p.kind for p in problems)
    written = [name for name, kinds in ((BAD_LIST, ("image missing", "image unreadable", "label file missing")),
                                        (BAD_LABEL_LIST, None))
               if any((p.line is not None) if kinds is None else p.kind in kinds for p in problems)]
    return (f"{plural(len(problems), 'problem')} ({'; '.join(f'{kind}: {n}' for kind, n in counts.most_common())})"
            + (f", listed in {' and '.join(os.path.abspath(name) for name in written)}" if written else ""))
