"""Darknet's data.c, its label side: train lists, label files and the classifier's labels in paths.

Boxes are float32 arrays of shape (n, 5): x, y, w, h, class (centre and size relative to the image),
the order of Darknet's truth records.

Where this module departs from Darknet on purpose (each is a crash or undefined behaviour there):
* A malformed label line is reported (file:line) and skipped; Darknet's fscanf loop silently stops
  reading the file at the first one. A missing label file means no boxes and a warning; Darknet exits.
* A box whose class is negative, or not below `classes` when classes is known, is reported and
  skipped; Darknet writes outside the truth or the layer's outputs.
"""
import math
import os
import sys
import warnings

import numpy as np

from ..errors import DarknetError
from ..files import write_lines


F32 = np.float32


LABEL_KINDS = ("detection", "region")           # the kinds whose truth comes from label files


KINDS = LABEL_KINDS + ("classification",)


def check_kind(kind, kinds=KINDS):
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")


class DataWarning(UserWarning):
    """A problem in the training data that is skipped over: a bad label line, a missing label file, an unreadable
    image."""


def read_list(path):
    """get_paths: the image paths of a train list, one per line.

    Surrounding whitespace (a Windows '\\r' included) is stripped and blank lines are skipped;
    Darknet keeps both and then fails on them.
    """
    path = os.fsdecode(path)
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DarknetError(f"Couldn't open file: {path} ({e.strerror or e})") from None
    return [line.strip() for line in lines if line.strip()]


def find_replace(s, orig, rep):
    """utils.c find_replace: replace the FIRST occurrence of orig in s (or return s unchanged)."""
    return s.replace(orig, rep, 1)


# fill_truth_detection's substitutions, in Darknet's order. fill_truth_region (REGION_DATA) has no "raw".
_DIRECTORY_RULES = (("images", "labels"), ("JPEGImages", "labels"), ("raw", "labels"))


_EXTENSION_RULES = (".jpg", ".png", ".JPG", ".JPEG")


# AlexeyAB's fork also maps these; they come after Darknet's own, so Darknet's results never change.
_EXTRA_EXTENSIONS = (".jpeg", ".bmp")


def label_path(image_path, kind="detection"):
    """The label file Darknet reads for an image: fill_truth_detection's find_replace chain.

    "images" -> "labels", "JPEGImages" -> "labels", "raw" -> "labels" (not for kind="region", whose
    fill_truth_region lacks it), then ".jpg", ".png", ".JPG", ".JPEG" -> ".txt", and after those
    AlexeyAB's ".jpeg", ".bmp" -> ".txt". Each rule replaces only the FIRST occurrence, anywhere in
    the path, as Darknet's find_replace does ("raw" inside "drawings" too). An extension no rule knows
    is left unchanged, so the result can be the image path itself.
    """
    check_kind(kind, LABEL_KINDS)
    s = os.fsdecode(image_path)
    for orig, rep in _DIRECTORY_RULES:
        if orig == "raw" and kind == "region":
            continue
        s = find_replace(s, orig, rep)
    for ext in _EXTENSION_RULES + _EXTRA_EXTENSIONS:
        s = find_replace(s, ext, ".txt")
    return s


def parse_boxes(path, classes=None, line_numbers=False):
    """read_boxes's body: (boxes, messages) instead of warnings, so worker threads (and `dataset check`,
    `calc_anchors`) can hand them over; with `line_numbers`, also each box's line in the file."""
    path = os.fsdecode(path)
    messages = []
    try:
        with open(path, encoding="utf-8-sig") as f:     # a byte-order mark is not part of line 1
            lines = f.read().splitlines()
    except FileNotFoundError:
        return _no_boxes(f"Couldn't open label file {path}: no such file; the image has no boxes", line_numbers)
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return _no_boxes(f"Couldn't read label file {path}: {reason}; the image has no boxes", line_numbers)
    rows, numbers = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            messages.append(f"{where}: expected 'class x y w h', got {len(fields)} fields; line skipped")
            continue
        try:
            cls = int(fields[0])
        except ValueError:
            messages.append(f"{where}: class {fields[0]!r} is not an integer; line skipped")
            continue
        try:
            x, y, w, h = (float(v) for v in fields[1:])
        except ValueError:
            messages.append(f"{where}: {' '.join(fields[1:])!r} are not four numbers; line skipped")
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            messages.append(f"{where}: coordinates must be finite numbers; line skipped")
            continue
        if cls < 0 or (classes is not None and cls >= classes):
            limit = f" (classes={classes})" if classes is not None else ""
            messages.append(f"{where}: class {cls} out of range{limit}; line skipped")
            continue
        rows.append((x, y, w, h, cls))
        numbers.append(number)
    # fscanf's %f stores floats: the values are rounded to float32 once, as Darknet holds them.
    boxes = np.array(rows, dtype=F32).reshape(-1, 5)
    return (boxes, messages, numbers) if line_numbers else (boxes, messages)


def _no_boxes(message, line_numbers):
    empty = np.zeros((0, 5), F32)
    return (empty, [message], []) if line_numbers else (empty, [message])


def read_boxes(path, classes=None):
    """read_boxes: a label file's boxes as float32 (n, 5): x, y, w, h, class.

    Lines are `class x y w h` (centre and size relative to the image). A malformed line (not five
    fields, a class that is not an integer or is negative or, when `classes` is given, >= classes,
    coordinates that are not finite numbers) is reported as a DataWarning naming file:line and
    skipped; the other lines are kept. A missing or unreadable file gives no boxes and a warning.
    """
    boxes, messages = parse_boxes(path, classes)
    for message in messages:
        warnings.warn(message, DataWarning, stacklevel=2)
    return boxes


def class_truth(path, labels):
    """fill_truth: 1 for every label that occurs in the path (strstr), with the number found."""
    truth = np.array([F32(label in path) for label in labels], F32)
    return truth, int(truth.sum())


def labels_message(count, path, classes):
    """fill_truth's complaint, as Darknet prints it: None when the path names exactly one label (or, with a single
    class, none: a yes/no classifier)."""
    if count == 1 or (classes == 1 and count == 0):
        return None
    return f"Too many or too few labels: {count}, {path}"


def read_labels(path):
    """A label file as (class ids, boxes x, y, w, h relative to the image), read as training reads it: a missing
    file or a malformed line is a warning (naming file and line), not an error."""
    rows = read_boxes(path)
    return rows[:, 4].astype(np.int64), np.ascontiguousarray(rows[:, :4])


# ---- writing a dataset: label files, lists, .names and .data ---------------------------------------------------

class DatasetError(DarknetError):
    """A dataset that cannot be converted: the message names the file (and what is wrong in it)."""


def plural(count, noun):
    """'1 problem', '2 problems': a count and its noun, in the number English wants."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def progress(items, what):
    """A tqdm bar on stderr for the dataset tools (none when stderr is not a terminal)."""
    from tqdm import tqdm     # the dataset tools' only: training never loads it
    return tqdm(items, desc=what, unit=" files", file=sys.stderr, disable=None, leave=False)


def label_file_in(image, root):
    """label_path(image), which must lie inside root and differ from the image (Darknet's find_replace also
    rewrites an 'images' or 'raw' higher up the path)."""
    label = label_path(image)
    if label == image or os.path.commonpath([root, label]) != root:
        raise DatasetError(f"{image}: its label file would be {label}, outside {root} (Darknet replaces the first "
                           f"'images', 'JPEGImages' or 'raw' in the path): move the dataset to a plain path")
    return label


def label_line(class_id, box):
    return f"{class_id} " + " ".join(str(v) for v in box)     # voc_label.py's str() of each number


def write_data(outdir, base, names, image_lists, eval_kind=None):
    """OUTDIR/<list>.txt for each list given, OUTDIR/<base>.names, and OUTDIR/<base>.data naming every list that
    exists there (a list written by an earlier run is kept)."""
    for which, paths in image_lists.items():
        write_lines(os.path.join(outdir, f"{which}.txt"), paths)
    names_path = os.path.join(outdir, f"{base}.names")
    write_lines(names_path, names)
    options = [f"classes={len(names)}"]
    options += [f"{which}={os.path.join(outdir, which + '.txt')}" for which in ("train", "valid")
                if os.path.exists(os.path.join(outdir, which + ".txt"))]
    options += [f"names={names_path}", f"backup={os.path.join(outdir, 'backup')}"]
    options += [f"eval={eval_kind}"] if eval_kind else []
    data = os.path.join(outdir, f"{base}.data")
    write_lines(data, options)
    return data
