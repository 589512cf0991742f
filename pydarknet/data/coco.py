"""`pydarknet dataset from-coco`: a COCO instances file in Darknet's layout, and COCO's category ids.

Every label file goes where `labels.label_path` of its image points, so `detector train` finds it; lists hold
absolute paths. Everything is read and checked before the first file is written, and each file is written under a
temp name and renamed (files.py): bad input leaves nothing half-written.
"""
import json
import os
import sys

from .. import files
from .labels import DatasetError, label_file_in, label_line, progress, write_data

# detector.c's coco_ids: class index -> COCO category id
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


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
            lines[a["image_id"]].append(label_line(class_of[a["category_id"]],
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
        links[image] = (source, link, label_file_in(link, outdir))
    for image, (source, link, label) in progress(links.items(), "images"):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(source, link)
        files.write_lines(label, lines[image])
    coco = tuple(category for category, _ in categories) == COCO_IDS
    data = write_data(outdir, "coco", [name for _, name in categories], {which: [link for _, link, _ in
                                                                                    links.values()]},
                       "coco" if coco else None)
    objects = sum(len(v) for v in lines.values())
    print(f"{len(images)} images linked into {os.path.join(outdir, 'images')}, {objects} objects of "
          f"{len(categories)} classes ({crowd} crowd boxes skipped); {which} list and {data}", file=out)
    return {"images": len(images), "objects": objects, "crowd": crowd, "data": data}
