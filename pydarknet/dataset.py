"""`pydarknet dataset from-voc | from-coco`: a VOC devkit or a COCO instances file in Darknet's layout.

    pydarknet dataset from-voc VOCDEVKIT OUTDIR [-names FILE] [-difficult]
    pydarknet dataset from-coco INSTANCES.json IMAGEDIR OUTDIR [-list train|valid]

Every label file goes where `data.label_path` of its image points, so `detector train` finds it; lists hold
absolute paths. Everything is read and checked before the first file is written, and each file is written under a
temp name and renamed (files.py): bad input leaves nothing half-written.
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ElementTree

from tqdm import tqdm

from . import files
from .cfg import read_names
from .data import label_path
from .errors import DarknetError

# voc_label.py's classes, in its order (data/voc.names holds the same)
VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
             "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOC_SPLITS = ("train", "val", "test")


class DatasetError(DarknetError):
    """A dataset that cannot be converted: the message names the file (and what is wrong in it)."""


def _progress(items, what):
    return tqdm(items, desc=what, unit=" files", file=sys.stderr, disable=None, leave=False)


def _label_file(image, root):
    """label_path(image), which must lie inside root and differ from the image (Darknet's find_replace also
    rewrites an 'images' or 'raw' higher up the path)."""
    label = label_path(image)
    if label == image or os.path.commonpath([root, label]) != root:
        raise DatasetError(f"{image}: its label file would be {label}, outside {root} (Darknet replaces the first "
                           f"'images', 'JPEGImages' or 'raw' in the path): move the dataset to a plain path")
    return label


def _voc_box(size, box):
    """voc_label.py's convert: box (xmin, xmax, ymin, ymax) in pixels -> relative (x, y, w, h), its -1 included."""
    width, height = size
    x = ((box[0] + box[1]) / 2.0 - 1) / width
    y = ((box[2] + box[3]) / 2.0 - 1) / height
    return x, y, (box[1] - box[0]) / width, (box[3] - box[2]) / height


def _label_line(class_id, box):
    return f"{class_id} " + " ".join(str(v) for v in box)     # voc_label.py's str() of each number


def _voc_annotation(path, names, difficult):
    """(label lines, objects skipped) of one Annotations/ID.xml."""
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
    lines, skipped = [], 0
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        hard = obj.find("difficult") is not None and number(obj, "difficult", int) == 1
        if name not in names or (hard and not difficult):
            skipped += 1
            continue
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"{path}: an <object> ({name}) without <bndbox>")
        corners = tuple(number(box, tag, float) for tag in ("xmin", "xmax", "ymin", "ymax"))
        lines.append(_label_line(names.index(name), _voc_box((width, height), corners)))
    return lines, skipped


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


def from_voc(devkit, outdir, names=None, difficult=False, out=sys.stdout):
    """voc_label.py for every VOC20XX folder of devkit, then OUTDIR/{train.txt, valid.txt, voc.names, voc.data};
    returns {"train": n, "valid": n, "objects": n, "skipped": n, "data": path}."""
    devkit, outdir = os.path.abspath(devkit), os.path.abspath(outdir)
    names = list(VOC_NAMES if names is None else read_names(names))
    lists = voc_lists(devkit)
    train, valid = split_voc(lists)
    images = {key: [os.path.join(devkit, f"VOC{key[0]}", "JPEGImages", f"{i}.jpg") for i in _read_ids(lists[key])]
              for key in train + valid}
    labels, skipped = {}, 0
    for key in train + valid:
        annotations = os.path.join(devkit, f"VOC{key[0]}", "Annotations")
        for image in _progress(images[key], f"VOC{key[0]} {key[1]}"):
            if image in labels:
                continue
            stem = os.path.splitext(os.path.basename(image))[0]
            lines, dropped = _voc_annotation(os.path.join(annotations, f"{stem}.xml"), names, difficult)
            labels[image] = (_label_file(image, devkit), lines)
            skipped += dropped
    for image, (label, lines) in _progress(labels.items(), "labels"):
        files.write_lines(label, lines)
    data = _write_data(outdir, "voc", names, {"train": [p for key in train for p in images[key]],
                                              "valid": [p for key in valid for p in images[key]]})
    objects = sum(len(lines) for _, lines in labels.values())
    result = {"train": sum(len(images[k]) for k in train), "valid": sum(len(images[k]) for k in valid),
              "objects": objects, "skipped": skipped, "data": data}
    print(f"{len(labels)} label files ({objects} objects; {skipped} difficult or unlisted skipped); training "
          f"{', '.join(f'VOC{y} {s}' for y, s in train)}: {result['train']} images; validation "
          f"{', '.join(f'VOC{y} {s}' for y, s in valid)}: {result['valid']} images; {data}", file=out)
    return result


def _write_data(outdir, base, names, image_lists, eval_kind=None):
    """OUTDIR/<list>.txt for each list given, OUTDIR/<base>.names, and OUTDIR/<base>.data naming every list that
    exists there (a list written by an earlier run is kept)."""
    for which, paths in image_lists.items():
        files.write_lines(os.path.join(outdir, f"{which}.txt"), paths)
    names_path = os.path.join(outdir, f"{base}.names")
    files.write_lines(names_path, names)
    options = [f"classes={len(names)}"]
    options += [f"{which}={os.path.join(outdir, which + '.txt')}" for which in ("train", "valid")
                if os.path.exists(os.path.join(outdir, which + ".txt"))]
    options += [f"names={names_path}", f"backup={os.path.join(outdir, 'backup')}"]
    options += [f"eval={eval_kind}"] if eval_kind else []
    data = os.path.join(outdir, f"{base}.data")
    files.write_lines(data, options)
    return data


def _coco_instances(path):
    """(images {id: (file_name, width, height)}, categories sorted by id, annotations) of an instances json."""
    try:
        with open(path) as f:
            instances = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}:{e.lineno}: malformed json ({e.msg})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror})") from None
    try:
        images = {image["id"]: (image["file_name"], float(image["width"]), float(image["height"]))
                  for image in instances["images"]}
        categories = sorted((c["id"], c["name"]) for c in instances["categories"])
        annotations = instances.get("annotations", [])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: not a COCO instances file (images, categories: {e!r} is missing or "
                           f"wrong)") from None
    if not images:
        raise DatasetError(f"{path}: no images in it")
    if not categories:
        raise DatasetError(f"{path}: no categories in it")
    return images, categories, annotations


def _coco_box(bbox, width, height):
    """COCO's [x, y, w, h] from the top-left, in pixels -> Darknet's relative (x, y, w, h) of the centre."""
    x, y, w, h = (float(v) for v in bbox)
    return (x + w / 2) / width, (y + h / 2) / height, w / width, h / height


def from_coco(instances, imagedir, outdir, which="train", out=sys.stdout):
    """A COCO instances json in Darknet's layout: images linked into OUTDIR/images, labels in OUTDIR/labels, the
    list OUTDIR/<which>.txt, OUTDIR/coco.names and coco.data; returns {"images", "objects", "crowd", "data"}."""
    from .evaluate import COCO_IDS
    if which not in ("train", "valid"):
        raise DatasetError(f"-list {which}: train or valid")
    imagedir, outdir = os.path.abspath(imagedir), os.path.abspath(outdir)
    images, categories, annotations = _coco_instances(instances)
    class_of = {category: k for k, (category, _) in enumerate(categories)}
    lines, crowd = {image: [] for image in images}, 0
    for n, a in enumerate(annotations):
        try:
            if a.get("iscrowd", 0):
                crowd += 1
                continue
            _, width, height = images[a["image_id"]]
            lines[a["image_id"]].append(_label_line(class_of[a["category_id"]],
                                                    _coco_box(a["bbox"], width, height)))
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{instances}: annotation {n} (id {a.get('id', '?') if isinstance(a, dict) else '?'})"
                               f": {e!r} is missing or unknown") from None
    links = {}
    for image, (file_name, _, _) in images.items():
        source = os.path.join(imagedir, file_name)
        if not os.path.exists(source):
            raise DatasetError(f"{source}: missing (image {image} of {instances})")
        link = os.path.join(outdir, "images", file_name)
        links[image] = (source, link, _label_file(link, outdir))
    for image, (source, link, label) in _progress(links.items(), "images"):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(source, link)
        files.write_lines(label, lines[image])
    coco = tuple(category for category, _ in categories) == COCO_IDS
    data = _write_data(outdir, "coco", [name for _, name in categories], {which: [link for _, link, _ in
                                                                                    links.values()]},
                       "coco" if coco else None)
    objects = sum(len(v) for v in lines.values())
    print(f"{len(images)} images linked into {os.path.join(outdir, 'images')}, {objects} objects of "
          f"{len(categories)} classes ({crowd} crowd boxes skipped); {which} list and {data}", file=out)
    return {"images": len(images), "objects": objects, "crowd": crowd, "data": data}


def from_voc_command(args):
    from .cli import UsageError
    names = args.value("-names", None)
    difficult = args.flag("-difficult")
    if len(args.argv) != 3:
        raise UsageError("usage: pydarknet dataset from-voc VOCDEVKIT OUTDIR [-names FILE] [-difficult]")
    from_voc(args.argv[1], args.argv[2], names, difficult)
    return 0


def from_coco_command(args):
    from .cli import UsageError
    which = args.value("-list", "train")
    if len(args.argv) != 4 or which not in ("train", "valid"):
        raise UsageError("usage: pydarknet dataset from-coco INSTANCES.json IMAGEDIR OUTDIR [-list train|valid]")
    from_coco(args.argv[1], args.argv[2], args.argv[3], which)
    return 0
