"""`pydarknet dataset from-voc`: a VOC devkit in Darknet's layout (voc_label.py's work).

Every label file goes where `labels.label_path` of its image points, so `detector train` finds it; lists hold
absolute paths. Everything is read and checked before the first file is written, and each file is written under a
temp name and renamed (files.py): bad input leaves nothing half-written.
"""
import os
import re
import sys
import xml.etree.ElementTree as ElementTree

from .. import files
from ..cfg import read_names
from .labels import DatasetError, label_file_in, label_line, plural, progress, write_data


# voc_label.py's classes, in its order (data/voc.names holds the same)
VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
             "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


VOC_SPLITS = ("train", "val", "test")


def _voc_box(size, box):
    """voc_label.py's convert: box (xmin, xmax, ymin, ymax) in pixels -> relative (x, y, w, h), its -1 included."""
    width, height = size
    x = ((box[0] + box[1]) / 2.0 - 1) / width
    y = ((box[2] + box[3]) / 2.0 - 1) / height
    return x, y, (box[1] - box[0]) / width, (box[3] - box[2]) / height


def _voc_annotation(path, names, difficult):
    """(label lines, difficult objects skipped, names of the objects outside `names`) of one Annotations/ID.xml."""
    def number(node, tag, convert):
        found = node.find(tag)
        try:
            return convert(found.text)
        except (AttributeError, TypeError, ValueError):
            raise DatasetError(f"{path}: <{tag}> is missing or not a number") from None

    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        raise DatasetError(f"{path}: malformed XML ({e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the annotation ({e.strerror})") from None
    size = root.find("size")
    if size is None:
        raise DatasetError(f"{path}: no <size>")
    width, height = number(size, "width", int), number(size, "height", int)
    if width <= 0 or height <= 0:
        raise DatasetError(f"{path}: <size> {width}x{height} is empty")
    lines, hard_skipped, unknown = [], 0, []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        hard = obj.find("difficult") is not None and number(obj, "difficult", int) == 1
        if name not in names:
            unknown.append(name)
            continue
        if hard and not difficult:
            hard_skipped += 1
            continue
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"{path}: an <object> ({name}) without <bndbox>")
        corners = tuple(number(box, tag, float) for tag in ("xmin", "xmax", "ymin", "ymax"))
        lines.append(label_line(names.index(name), _voc_box((width, height), corners)))
    return lines, hard_skipped, unknown


def _read_ids(path):
    try:
        with open(path) as f:
            ids = [line.split()[0] for line in f if line.strip()]
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the list ({e.strerror})") from None
    if not ids:
        raise DatasetError(f"{path}: the list is empty")
    return ids


def voc_lists(devkit):
    """{(year, split): list file} of ImageSets/Main/{train,val,test}.txt under every VOC20XX folder of devkit."""
    if not os.path.isdir(devkit):
        raise DatasetError(f"{devkit}: no such VOC devkit folder")
    years = sorted(name[3:] for name in os.listdir(devkit)
                   if re.fullmatch(r"VOC\d{4}", name) and os.path.isdir(os.path.join(devkit, name)))
    if not years:
        raise DatasetError(f"{devkit}: no VOC20XX folder in it (expected e.g. {devkit}/VOC2007)")
    lists = {(year, split): os.path.join(devkit, f"VOC{year}", "ImageSets", "Main", f"{split}.txt")
             for year in years for split in VOC_SPLITS}
    lists = {key: path for key, path in lists.items() if os.path.isfile(path)}
    if not lists:
        raise DatasetError(f"{devkit}: no ImageSets/Main/train.txt, val.txt or test.txt under its VOC folders")
    return lists


def split_voc(lists):
    """(training keys, validation keys): validation is VOC2007's test (else every test list there is; with none,
    the last year's val, which then stays out of training); training is every other train and val list."""
    valid = [key for key in lists if key == ("2007", "test")] or [key for key in lists if key[1] == "test"]
    if not valid:
        vals = sorted(key for key in lists if key[1] == "val")
        valid = vals[-1:]
    train = [key for key in sorted(lists) if key[1] != "test" and key not in valid]
    if not train:
        raise DatasetError(f"{lists[valid[0]] if valid else 'VOC devkit'}: no train or val list is left for training")
    return train, valid


def from_voc(devkit, outdir, names=None, difficult=False, out=sys.stdout, err=sys.stderr):
    """voc_label.py for every VOC20XX folder of devkit, then OUTDIR/{train.txt, valid.txt, voc.names, voc.data};
    returns {"train": n, "valid": n, "objects": n, "skipped": n, "difficult": n, "unknown": n, "missing": n,
    "data": path}.

    Checked before anything is written, each reported in one line on `err`: an image a list names that JPEGImages
    lacks (left out of the lists), and with VOC's own classes an object of another name (skipped; with -names FILE
    such objects are the user's choice, so only counted)."""
    devkit, outdir = os.path.abspath(devkit), os.path.abspath(outdir)
    own_names = names is not None
    names = list(read_names(names) if own_names else VOC_NAMES)
    lists = voc_lists(devkit)
    train, valid = split_voc(lists)
    images, notes = {}, []        # notes: printed once everything is read (bad input stays one line)
    for key in train + valid:
        listed = [os.path.join(devkit, f"VOC{key[0]}", "JPEGImages", f"{i}.jpg") for i in _read_ids(lists[key])]
        images[key] = [image for image in listed if os.path.isfile(image)]
        notes += [f"{image}: missing (named by {lists[key]}); left out of the lists"
                  for image in sorted(set(listed) - set(images[key]))]
    missing = len(notes)
    labels, hard, unknown = {}, 0, 0
    for key in train + valid:
        annotations = os.path.join(devkit, f"VOC{key[0]}", "Annotations")
        for image in progress(images[key], f"VOC{key[0]} {key[1]}"):
            if image in labels:
                continue
            stem = os.path.splitext(os.path.basename(image))[0]
            xml = os.path.join(annotations, f"{stem}.xml")
            lines, dropped, others = _voc_annotation(xml, names, difficult)
            labels[image] = (label_file_in(image, devkit), lines)
            hard, unknown = hard + dropped, unknown + len(others)
            notes += [f"{xml}: an object '{name}', not one of VOC's {len(names)} classes; skipped"
                      for name in (others if not own_names else ())]
    for note in notes:
        print(note, file=err)
    for image, (label, lines) in progress(labels.items(), "labels"):
        files.write_lines(label, lines)
    data = write_data(outdir, "voc", names, {"train": [p for key in train for p in images[key]],
                                              "valid": [p for key in valid for p in images[key]]})
    objects = sum(len(lines) for _, lines in labels.values())
    result = {"train": sum(len(images[k]) for k in train), "valid": sum(len(images[k]) for k in valid),
              "objects": objects, "skipped": hard + unknown, "difficult": hard, "unknown": unknown,
              "missing": missing, "data": data}
    gone = f"; {plural(missing, 'listed image')} missing, left out" if missing else ""
    print(f"{len(labels)} label files ({objects} objects; {hard} difficult and {unknown} of other classes "
          f"skipped{gone}); training "
          f"{', '.join(f'VOC{y} {s}' for y, s in train)}: {result['train']} images; validation "
          f"{', '.join(f'VOC{y} {s}' for y, s in valid)}: {result['valid']} images; {data}", file=out)
    return result
