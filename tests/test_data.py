"""pydarknet.data: Darknet's label rules, read_boxes, box corrections, the two augmentations, truth layouts, Loader."""
import pathlib
import warnings

import cv2
import numpy as np
import pytest

from pydarknet.data import augment, labels
from pydarknet.data.loader import Loader
from pydarknet.data.labels import DataWarning
from pydarknet.data.augment import DetectionAug, RegionAug
from pydarknet.errors import DarknetError
from pydarknet.image import crop_image, flip_image, resize_image

F32 = np.float32

# The boxes golden/README.md lists for the yolo/region/detection training goldens: (x, y, w, h, class).
GOLDEN_BOXES = [
    [(.30, .40, .20, .30, 0), (.70, .60, .50, .40, 2), (.52, .25, .08, .10, 1)],
    [(.45, .55, .80, .70, 1), (.15, .80, .12, .15, 0)],
]


def boxes(*rows):
    return np.array(rows, dtype=F32).reshape(-1, 5)


# ---------------------------------------------------------------- label paths and lists

@pytest.mark.parametrize("image_path, expected", [
    ("data/images/x.jpg", "data/labels/x.txt"),
    ("VOCdevkit/VOC2007/JPEGImages/000001.jpg", "VOCdevkit/VOC2007/labels/000001.txt"),
    ("coco/images/train2014/a.png", "coco/labels/train2014/a.txt"),
    ("set/raw/a.JPG", "set/labels/a.txt"),
    ("set/images/a.JPEG", "set/labels/a.txt"),
    # find_replace replaces only the FIRST occurrence of each pattern
    ("a/images/b/images/c.jpg", "a/labels/b/images/c.txt"),
    ("x.jpg.d/y.jpg", "x.txt.d/y.jpg"),
    # ... anywhere in the path: "raw" inside a word too, after "images" was replaced
    ("/data/drawings/images/x.png", "/data/dlabelsings/labels/x.txt"),
    # AlexeyAB's extra extensions, applied after Darknet's
    ("set/images/a.jpeg", "set/labels/a.txt"),
    ("set/images/a.bmp", "set/labels/a.txt"),
    # extensions no rule knows stay as they are (Darknet's list is case-sensitive)
    ("set/images/a.gif", "set/labels/a.gif"),
    ("set/images/a.PNG", "set/labels/a.PNG"),
    ("set/images/a.tiff", "set/labels/a.tiff"),
])
def test_label_path(image_path, expected):
    assert labels.label_path(image_path) == expected


def test_label_path_region_has_no_raw_rule():
    # fill_truth_region (v1's REGION_DATA) lacks fill_truth_detection's "raw" -> "labels"
    assert labels.label_path("/data/raw/images/x.png", kind="region") == "/data/raw/labels/x.txt"
    assert labels.label_path("/data/raw/images/x.png") == "/data/labels/labels/x.txt"


def test_label_path_accepts_pathlike_and_rejects_unknown_kind():
    assert labels.label_path(pathlib.Path("d/images/a.jpg")) == "d/labels/a.txt"
    with pytest.raises(ValueError, match="kind"):
        labels.label_path("a.jpg", kind="classification")


def test_read_list(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"\xef\xbb\xbfa/images/1.jpg\r\n\n  \nb/images/2.png\nc/3.jpg")
    assert labels.read_list(path) == ["a/images/1.jpg", "b/images/2.png", "c/3.jpg"]


def test_read_list_missing_names_the_file(tmp_path):
    with pytest.raises(DarknetError, match="nope.txt"):
        labels.read_list(tmp_path / "nope.txt")


# ---------------------------------------------------------------- read_boxes

def test_read_boxes_skips_malformed_lines_with_file_and_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("0 0.5 0.5 0.2 0.4\n"          # 1 good
                    "1 0.5 0.5 0.2\n"              # 2 four fields
                    "1 0.5 zero 0.2 0.3\n"         # 3 not a number
                    "-1 0.5 0.5 0.2 0.3\n"         # 4 negative class
                    "a 0.5 0.5 0.2 0.3\n"          # 5 class not an integer
                    "\n"                           # 6 blank: silently skipped
                    "2 nan 0.5 0.2 0.3\n"          # 7 not finite
                    "2 0.25 0.75 0.125 0.5\n"      # 8 good
                    "7 0.25 0.75 0.125 0.5\n"      # 9 class >= classes
                    "1 0.5 0.5 0.2 0.3 0.9\n")     # 10 six fields
    with pytest.warns(DataWarning) as record:
        got = labels.read_boxes(path, classes=3)
    messages = [str(w.message) for w in record]
    for line in (2, 3, 4, 5, 7, 9, 10):
        assert any(m.startswith(f"{path}:{line}:") for m in messages), (line, messages)
    assert len(messages) == 7
    np.testing.assert_array_equal(got, boxes((.5, .5, .2, .4, 0), (.25, .75, .125, .5, 2)))
    assert got.dtype == F32


def test_read_boxes_without_classes_keeps_any_nonnegative_class(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("7 0.25 0.75 0.125 0.5\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(labels.read_boxes(path), boxes((.25, .75, .125, .5, 7)))


def test_read_boxes_missing_file_is_no_boxes_and_a_warning(tmp_path):
    with pytest.warns(DataWarning, match="missing.txt"):
        got = labels.read_boxes(tmp_path / "missing.txt")
    assert got.shape == (0, 5)


# ---------------------------------------------------------------- random helpers

def test_rand_uniform_swaps_and_is_float32():
    assert augment.rand_uniform(.5, 4, 2) == F32(3)
    assert augment.rand_uniform(0, 4, 2) == F32(2)
    assert augment.rand_uniform(.25, -2, 2).dtype == F32


def test_rand_scale_coin():
    assert augment.rand_scale(.5, True, 3) == F32(2)
    assert augment.rand_scale(.5, False, 3) == F32(.5)
    assert augment.rand_scale(.9, False, 1) == F32(1)      # saturation/exposure 1: always 1


def test_randomize_boxes_is_darknets_swap_loop():
    a, b, c = (.1, .1, .1, .1, 0), (.2, .2, .2, .2, 1), (.3, .3, .3, .3, 2)
    # i=0 swaps 0,2 -> C B A; i=1 swaps 1,0 -> B C A; i=2 swaps 2,1 -> B A C
    got = augment.randomize_boxes(boxes(a, b, c), (2, 0, 1))
    np.testing.assert_array_equal(got, boxes(b, a, c))


def test_draws_without_jitter_or_colour_are_identity():
    rng = np.random.default_rng(5)
    aug = augment.draw_detection_aug(rng, 200, 200, 64, 64, 0, 0, 1, 1, 3)
    assert (aug.nw, aug.nh, aug.dx, aug.dy) == (64, 64, 0, 0)
    assert (aug.dhue, aug.dsat, aug.dexp) == (0, 1, 1)
    assert len(aug.swaps) == 3 and all(0 <= s < 3 for s in aug.swaps)
    raug = augment.draw_region_aug(rng, 200, 100, 0, 0, 1, 1, 2)
    assert (raug.pleft, raug.pright, raug.ptop, raug.pbot) == (0, 0, 0, 0)


def test_detection_draws_stay_in_darknets_ranges():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        aug = augment.draw_detection_aug(rng, 300, 200, 96, 64, .3, .1, 1.5, 1.5, 0)
        # scale = 1: the longer side of the jittered aspect gets the network's size on that axis
        # (Darknet ignores the network's own aspect, so on a 96 x 64 network nh may exceed 64)
        assert (aug.nw == 96 and aug.nh <= 96) or (aug.nh == 64 and aug.nw < 64)
        new_ar = aug.nw / aug.nh
        assert 1.5 * .7 / 1.3 - 1e-5 <= new_ar <= 1.5 * 1.3 / .7 + 1e-5      # (300 +- 90) / (200 +- 60)
        for d, free in ((aug.dx, 96 - aug.nw), (aug.dy, 64 - aug.nh)):
            assert min(0, free) - 1e-4 <= d <= max(0, free) + 1e-4
        assert -.1 <= aug.dhue <= .1
        assert 1 / 1.5 - 1e-6 <= aug.dsat <= 1.5 + 1e-6 and 1 / 1.5 - 1e-6 <= aug.dexp <= 1.5 + 1e-6


def test_region_draws_stay_in_darknets_ranges():
    seen = set()
    for seed in range(200):
        raug = augment.draw_region_aug(np.random.default_rng(seed), 101, 53, .2, 0, 1, 1, 0)
        # dw = (int)(101*.2) = 20, dh = (int)(53*.2) = 10; margins truncated toward zero
        assert all(-20 < v < 20 for v in (raug.pleft, raug.pright))
        assert all(-10 < v < 10 for v in (raug.ptop, raug.pbot))
        seen.add(raug.flip)
    assert seen == {False, True}


def test_jitter_out_of_range_is_refused():
    with pytest.raises(ValueError, match="jitter"):
        augment.draw_detection_aug(np.random.default_rng(0), 10, 10, 8, 8, 1.0, 0, 1, 1, 0)
    with pytest.raises(ValueError, match="jitter"):
        augment.draw_region_aug(np.random.default_rng(0), 10, 10, .5, 0, 1, 1, 0)


# ---------------------------------------------------------------- correct_boxes and the truth fillers

def test_correct_boxes_scale_shift_clip():
    b = boxes((.5, .5, .2, .4, 3), (.9, .1, .4, .4, 1))
    got = augment.correct_boxes(b, dx=.1, dy=-.2, sx=.5, sy=1, flip=False)
    # box 0: left .4*.5-.1 = .1, right .6*.5-.1 = .2; top .3+.2 = .5, bottom .7+.2 = .9
    # box 1: left .7*.5-.1 = .25, right 1.1*.5-.1 = .45; top -.1+.2 = .1, bottom .3+.2 = .5
    np.testing.assert_allclose(got, [[.15, .7, .1, .4, 3], [.35, .3, .2, .4, 1]], atol=1e-6)
    # shifted down by .5: box 0's bottom leaves the image and is clipped
    got = augment.correct_boxes(b, dx=0, dy=-.5, sx=1, sy=1, flip=False)
    np.testing.assert_allclose(got[0], [.5, .9, .2, .2, 3], atol=1e-6)    # top .8, bottom 1.2 -> 1


def test_correct_boxes_flip_mirrors_edges():
    got = augment.correct_boxes(boxes((.2, .5, .2, .2, 0)), 0, 0, 1, 1, flip=True)
    # left .1, right .3 -> left 1-.3 = .7, right 1-.1 = .9
    np.testing.assert_allclose(got, [[.8, .5, .2, .2, 0]], atol=1e-6)


def test_correct_boxes_drops_the_zero_centre_box():
    got = augment.correct_boxes(boxes((0, 0, .2, .2, 0)), 0, 0, 1, 1, False)
    assert got[0, 2] == 0 and got[0, 3] == 0
    assert not augment.detection_truth(got, 4).any()


def test_detection_truth_caps_then_skips_and_compacts():
    a, tiny, c, d = (.3, .3, .2, .2, 1), (.5, .5, .0005, .3, 2), (.7, .7, .1, .1, 0), (.6, .6, .1, .1, 2)
    truth = augment.detection_truth(boxes(a, tiny, c, d), 3)
    # cut to 3 boxes first (d never enters), the tiny one is skipped and c moves up into its slot
    np.testing.assert_array_equal(truth.reshape(3, 5), np.array([a, c, (0, 0, 0, 0, 0)], F32))
    truth = augment.detection_truth(boxes(tiny, a, c, d), 2)
    np.testing.assert_array_equal(truth.reshape(2, 5), np.array([a, (0, 0, 0, 0, 0)], F32))


def test_region_truth_layout_first_box_wins():
    # side 2, classes 3: cells of 8 = [1, c0, c1, c2, x, y, w, h]
    b = boxes((.75, .25, .2, .3, 2), (.6, .4, .5, .5, 0), (.25, .75, .1, .1, 1), (.5, .5, .004, .5, 0))
    got = augment.region_truth(b, classes=3, side=2)
    want = np.zeros((4, 8), F32)
    want[1] = [1, 0, 0, 1, F32(.75) * 2 - 1, F32(.25) * 2, F32(.2), F32(.3)]   # col 1, row 0
    want[2] = [1, 0, 1, 0, F32(.25) * 2, F32(.75) * 2 - 1, F32(.1), F32(.1)]   # col 0, row 1
    np.testing.assert_array_equal(got.reshape(4, 8), want)     # box 2 lost cell 1; box 4 is too thin


def test_region_truth_class_outside_classes_marks_the_cell_only():
    got = augment.region_truth(boxes((.5, .5, .2, .2, 5)), classes=3, side=1)
    np.testing.assert_array_equal(got, np.array([1, 0, 0, 0, .5, .5, .2, .2], F32))


def test_golden_detection_truth(golden):
    # golden/README: the same boxes, zero padded, for yolo (90 boxes) and region (30 boxes)
    for name, max_boxes in (("v3mini", 90), ("v2mini", 30)):
        expected = np.load(golden / name / "train" / "truth.npy")
        got = np.stack([augment.detection_truth(boxes(*bs), max_boxes) for bs in GOLDEN_BOXES])
        assert got.tobytes() == expected.tobytes(), name


def test_golden_v1_grid_truth(golden):
    # golden/README: side 3, 3 classes, fill_truth_region's cell layout, float32 arithmetic
    expected = np.load(golden / "v1mini-nodrop" / "train" / "truth.npy")
    got = np.stack([augment.region_truth(boxes(*bs), classes=3, side=3) for bs in GOLDEN_BOXES])
    assert got.shape == expected.shape == (2, 72)
    assert got.tobytes() == expected.tobytes()


# ---------------------------------------------------------------- DETECTION_DATA on a drawn image

def white_box_image(w, h, box):
    """A black w x h image with the box (relative x, y, w, h) painted white."""
    im = np.zeros((3, h, w), F32)
    x, y, bw, bh = box
    im[:, round((y - bh / 2) * h):round((y + bh / 2) * h), round((x - bw / 2) * w):round((x + bw / 2) * w)] = 1
    return im


def test_detection_aug_boxes_and_pixels_by_hand():
    box = (.5, .5, .2, .4)                  # pixels x 40..59, y 15..34 of a 100 x 50 image
    im = white_box_image(100, 50, box)
    aug = DetectionAug(nw=80, nh=40, dx=10, dy=20)
    sized, truth = augment.apply_detection_aug(im, boxes(box + (1,)), 128, 64, aug, max_boxes=2)
    # left .4*80+10 = 42, right .6*80+10 = 58 of 128; top .3*40+20 = 32, bottom .7*40+20 = 48 of 64
    np.testing.assert_allclose(truth, [50 / 128, 40 / 64, 16 / 128, 16 / 64, 1, 0, 0, 0, 0, 0], atol=1e-6)
    assert sized.shape == (3, 64, 128)
    assert np.all(sized[:, 34:46, 44:56] > .99)        # the white box, where the truth says
    assert np.all(sized[:, 22:30, 12:88] < .01)        # black image above it
    assert np.all(sized[:, 62:, :] == F32(.5)) and np.all(sized[:, :, 92:] == F32(.5))   # grey canvas


def test_detection_aug_flip_mirrors_image_and_box():
    box = (.5, .5, .2, .4)
    im = white_box_image(100, 50, box)
    aug = DetectionAug(nw=80, nh=40, dx=10, dy=20, flip=True)
    sized, truth = augment.apply_detection_aug(im, boxes(box + (1,)), 128, 64, aug, max_boxes=1)
    # edges 42..58 mirror to 128-58 .. 128-42 = 70..86
    np.testing.assert_allclose(truth, [78 / 128, 40 / 64, 16 / 128, 16 / 64, 1], atol=1e-6)
    assert np.all(sized[:, 34:46, 72:84] > .99)
    assert np.all(sized[:, 34:46, 44:56] < .01)
    assert np.all(sized[:, :, :36] == F32(.5))         # the canvas margin is now on the left


def test_detection_aug_truncates_placement_but_not_truth():
    # Darknet passes float nw, dx to place_image's int parameters (truncation); the truth keeps the floats
    box = (.5, .5, .2, .4)
    im = white_box_image(100, 50, box)
    exact, _ = augment.apply_detection_aug(im, boxes(box + (0,)), 128, 64, DetectionAug(80, 40, 10, 20), 1)
    sized, truth = augment.apply_detection_aug(im, boxes(box + (0,)), 128, 64, DetectionAug(80.7, 40.9, 10.9, 20.6), 1)
    np.testing.assert_array_equal(sized, exact)
    left, right = .4 * 80.7 + 10.9, .6 * 80.7 + 10.9
    top, bottom = .3 * 40.9 + 20.6, .7 * 40.9 + 20.6
    np.testing.assert_allclose(truth, [(left + right) / 256, (top + bottom) / 128, (right - left) / 128,
                                       (bottom - top) / 64, 0], atol=1e-6)


def test_detection_aug_clips_and_drops_boxes_leaving_the_canvas():
    im = np.zeros((3, 100, 100), F32)
    b = boxes((.2, .5, .2, .2, 0), (.9, .5, .1, .1, 1), (.5, .5, .2, .2, 2))
    # the image is twice the canvas and shifted left by 100: x' = 2x - 1 relative to the 100 x 100 canvas
    sized, truth = augment.apply_detection_aug(im, b, 100, 100, DetectionAug(200, 100, -100, 0), max_boxes=3)
    # box 0: edges .1, .3 -> -.8, -.4: outside, w = 0, skipped; box 1: .85, .95 -> .7, .9;
    # box 2: .4, .6 -> -.2, .2 -> clipped to 0, .2
    np.testing.assert_allclose(truth.reshape(3, 5), [[.8, .5, .2, .1, 1], [.1, .5, .2, .2, 2], [0, 0, 0, 0, 0]],
                               atol=1e-6)


def test_detection_aug_colour_and_shuffle_are_used():
    im = np.random.default_rng(0).random((3, 40, 40), dtype=F32)
    b = boxes((.3, .3, .2, .2, 0), (.7, .7, .2, .2, 1))
    plain, t0 = augment.apply_detection_aug(im, b, 40, 40, DetectionAug(40, 40, 0, 0, swaps=(0, 1)), 2)
    darker, t1 = augment.apply_detection_aug(im, b, 40, 40, DetectionAug(40, 40, 0, 0, dexp=.5, swaps=(1, 1)), 2)
    np.testing.assert_allclose(darker, plain * .5, atol=2e-6)       # exposure scales V: every channel halves
    np.testing.assert_array_equal(t1.reshape(2, 5)[::-1], t0.reshape(2, 5))


def test_detection_sample_is_draw_then_apply():
    im = np.random.default_rng(1).random((3, 50, 70), dtype=F32)
    b = boxes(*GOLDEN_BOXES[0])
    x, truth = augment.detection_sample(im, b, 32, 32, .2, .1, 1.5, 1.5, np.random.default_rng(11), max_boxes=5)
    aug = augment.draw_detection_aug(np.random.default_rng(11), 70, 50, 32, 32, .2, .1, 1.5, 1.5, 3)
    x2, truth2 = augment.apply_detection_aug(im, b, 32, 32, aug, max_boxes=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(truth, truth2)


def test_detection_sample_without_augmentation_keeps_boxes():
    im = np.random.default_rng(1).random((3, 60, 60), dtype=F32)
    b = boxes(*GOLDEN_BOXES[0])
    flips = set()
    for seed in range(8):
        _, truth = augment.detection_sample(im, b, 32, 32, 0, 0, 1, 1, np.random.default_rng(seed), max_boxes=5)
        aug = augment.draw_detection_aug(np.random.default_rng(seed), 60, 60, 32, 32, 0, 0, 1, 1, 3)
        flips.add(aug.flip)
        want = b.copy()
        if aug.flip:                                   # Darknet flips half the images even without jitter
            want[:, 0] = 1 - want[:, 0]
        got = truth.reshape(5, 5)[:3]
        assert not truth.reshape(5, 5)[3:].any()
        # only the order changes (randomize_boxes); values up to float32 rounding of the edge arithmetic
        np.testing.assert_allclose(got[np.argsort(got[:, 4])], want[np.argsort(want[:, 4])], atol=1e-6)
    assert flips == {False, True}


# ---------------------------------------------------------------- REGION_DATA

def test_region_aug_by_hand():
    im = np.random.default_rng(2).random((3, 80, 100), dtype=F32)
    box = (.5, .5, .2, .25, 1)
    # swidth = 100 - 10 + 10 = 100, sheight = 80 - 8 - 12 = 60
    aug = RegionAug(pleft=10, pright=-10, ptop=8, pbot=12)
    sized, truth = augment.apply_region_aug(im, boxes(box), 48, 36, aug, classes=2, side=3)
    np.testing.assert_allclose(sized, resize_image(crop_image(im, 10, 8, 100, 60), 48, 36), atol=1e-6)
    # left 40 -> (40-10)/100 = .3, right (60-10)/100 = .5; top 30 -> (30-8)/60, bottom 50 -> 42/60
    x, y, w, h = .4, (22 / 60 + 42 / 60) / 2, .2, 20 / 60
    want = np.zeros((9, 7), F32)
    want[1 + 1 * 3] = [1, 0, 1, x * 3 - 1, y * 3 - 1, w, h]            # col 1, row 1
    np.testing.assert_allclose(truth.reshape(9, 7), want, atol=1e-6)

    sized, truth = augment.apply_region_aug(im, boxes(box), 48, 36, RegionAug(10, -10, 8, 12, flip=True), 2, 3)
    expected = resize_image(crop_image(im, 10, 8, 100, 60), 48, 36)
    flip_image(expected)
    np.testing.assert_allclose(sized, expected, atol=1e-6)
    want[:] = 0
    want[1 + 1 * 3] = [1, 0, 1, .6 * 3 - 1, y * 3 - 1, w, h]           # edges .3, .5 -> .5, .7
    np.testing.assert_allclose(truth.reshape(9, 7), want, atol=1e-6)


def test_region_aug_crop_outside_repeats_the_edge_and_clips_boxes():
    im = np.zeros((3, 50, 50), F32)
    im[:, :, :5] = 1                                  # a white left edge
    b = boxes((.05, .5, .1, .2, 0))
    sized, truth = augment.apply_region_aug(im, b, 50, 50, RegionAug(pleft=-25, pright=0, ptop=0, pbot=0), 1, 2)
    assert np.all(sized[:, :, :20] > .99)             # crop_image clamps: the edge column repeats
    # swidth 75: left (0+25)/75, right (5+25)/75
    left, right = 25 / 75, 30 / 75
    np.testing.assert_allclose(truth.reshape(4, 6)[2], [1, 1, (left + right) / 2 * 2, .5 * 2 - 1, right - left, .2],
                               atol=1e-6)
    # cropping the box away entirely leaves an empty grid
    _, truth = augment.apply_region_aug(im, b, 50, 50, RegionAug(pleft=12, pright=0, ptop=0, pbot=0), 1, 2)
    assert not truth.any()


def test_region_sample_shapes():
    im = np.random.default_rng(3).random((3, 40, 50), dtype=F32)
    sized, truth = augment.region_sample(im, boxes((.5, .5, .3, .3, 1)), 32, 24, .2, .1, 1.5, 1.5,
                                      np.random.default_rng(0), classes=3, side=7)
    assert sized.shape == (3, 24, 32) and truth.shape == (7 * 7 * 8,)
    assert truth[::8].sum() == 1


# ---------------------------------------------------------------- Loader

@pytest.fixture
def dataset(tmp_path_factory):
    """Six small images of different sizes under images/, their labels under labels/, and train.txt.

    Not under tmp_path: that is named after the test, and label_path's "raw" rule would rewrite a
    test name containing "draws" (Darknet's find_replace looks anywhere in the path).
    """
    tmp_path = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(7)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    paths = []
    for i, (w, h) in enumerate([(64, 48), (40, 60), (50, 50), (80, 30), (33, 47), (72, 72)]):
        path = tmp_path / "images" / f"img{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        lines = [f"{rng.integers(3)} {x:.4f} {y:.4f} {bw:.4f} {bh:.4f}"
                 for x, y, bw, bh in rng.uniform([.2, .2, .05, .05], [.8, .8, .4, .4], (1 + i % 3, 4))]
        (tmp_path / "labels" / f"img{i}.txt").write_text("\n".join(lines) + "\n")
        paths.append(str(path))
    (tmp_path / "train.txt").write_text("\n".join(paths) + "\n")
    return tmp_path


def take(loader, n):
    return [loader.next() for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ta), (xb, tb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta, tb)


SETTINGS = dict(kind="detection", batch=4, classes=3, max_boxes=6, jitter=.3, hue=.1, saturation=1.5, exposure=1.5)


def test_loader_shapes_and_boxes(dataset):
    with Loader(dataset / "train.txt", (48, 32), **SETTINGS, seed=1, workers=2) as loader:
        X, truth = loader.next()
        assert X.shape == (4, 3, 32, 48) and X.dtype == F32
        assert truth.shape == (4, 30) and truth.dtype == F32
        assert loader.truths == 30 and loader.batch_index == 1
        records = truth.reshape(4, 6, 5)
        assert (records[:, 0, 2] > 0).all()            # every image has at least one box left
        assert ((records[..., :4] >= 0) & (records[..., :4] <= 1)).all()
        assert 0 <= X.min() and X.max() <= 1


def test_loader_same_seed_same_batches_any_workers(dataset):
    paths = labels.read_list(dataset / "train.txt")
    with Loader(paths, (48, 32), **SETTINGS, seed=3, workers=1) as one, \
            Loader(paths, (48, 32), **SETTINGS, seed=3, workers=3, prefetch=3) as three:
        first, second = take(one, 2), take(three, 2)
        one.set_size(64, 64)                           # multi-scale between batches
        three.set_size(64, 64)
        first += take(one, 2)
        second += take(three, 2)
    assert_same_batches(first, second)
    assert first[2][0].shape == (4, 3, 64, 64)
    # batch k depends on (seed, k, size) only: start at batch 2 directly at 64 x 64
    with Loader(paths, (64, 64), **SETTINGS, seed=3, workers=2, start=2) as later:
        assert_same_batches(first[2:], take(later, 2))


def test_loader_other_seed_other_batches(dataset):
    with Loader(dataset / "train.txt", (48, 32), **SETTINGS, seed=3, workers=2) as a, \
            Loader(dataset / "train.txt", (48, 32), **SETTINGS, seed=4, workers=2) as b:
        (xa, ta), (xb, tb) = a.next(), b.next()
    assert not np.array_equal(xa, xb)
    assert not np.array_equal(ta, tb)


def test_loader_batches_differ_from_each_other(dataset):
    with Loader(dataset / "train.txt", (48, 32), **SETTINGS, seed=3, workers=2) as loader:
        (x0, _), (x1, _) = take(loader, 2)
    assert not np.array_equal(x0, x1)


def test_loader_processes_match_threads(dataset):
    paths = labels.read_list(dataset / "train.txt")
    with Loader(paths, (48, 32), **SETTINGS, seed=9, workers=2) as threads, \
            Loader(paths, (48, 32), **SETTINGS, seed=9, workers=2, processes=True) as processes:
        assert_same_batches(take(threads, 2), take(processes, 2))


def test_loader_survives_unreadable_images(dataset):
    bad = dataset / "images" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    (dataset / "labels" / "broken.txt").write_text("0 .5 .5 .2 .2\n")
    gone = dataset / "images" / "gone.jpg"
    paths = [str(bad), str(gone), labels.read_list(dataset / "train.txt")[0]]
    with pytest.warns(DataWarning) as record:
        with Loader(paths, (32, 32), **SETTINGS, seed=0, workers=2) as loader:
            batches = take(loader, 4)
    messages = " ".join(str(w.message) for w in record)
    assert "broken.jpg" in messages and "gone.jpg" in messages
    for X, truth in batches:                           # every slot holds the one good image
        assert X.shape == (4, 3, 32, 32) and np.isfinite(X).all()
        assert (truth.reshape(4, 6, 5)[:, 0, 2] > 0).all()


def test_loader_all_unreadable_is_an_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with Loader([str(bad)], (32, 32), **SETTINGS, seed=0, workers=1) as loader:
        with pytest.raises(DarknetError, match="bad.jpg"):
            loader.next()


def test_loader_reports_bad_labels_once(dataset):
    path = labels.read_list(dataset / "train.txt")[0]
    (dataset / "labels" / "img0.txt").write_text("0 .5 .5 .2 .2\n0 .5 .5\n")
    with pytest.warns(DataWarning) as record:
        with Loader([path], (32, 32), **SETTINGS, seed=0, workers=2) as loader:
            _, truth = loader.next()
            loader.next()
    messages = [str(w.message) for w in record]
    assert messages == [f"{dataset / 'labels' / 'img0.txt'}:2: expected 'class x y w h', got 3 fields; line skipped"]
    assert (truth.reshape(4, 6, 5)[:, 0, 2] > 0).all() and not truth.reshape(4, 6, 5)[:, 1].any()


def test_loader_missing_label_file_means_no_boxes(dataset):
    path = labels.read_list(dataset / "train.txt")[1]
    (dataset / "labels" / "img1.txt").unlink()
    with pytest.warns(DataWarning, match="img1.txt"):
        with Loader([path], (32, 32), **SETTINGS, seed=0, workers=1) as loader:
            X, truth = loader.next()
    assert not truth.any() and X.shape == (4, 3, 32, 32)


def test_loader_region_kind(dataset):
    with Loader(dataset / "train.txt", (28, 28), "region", batch=3, classes=3, jitter=.2, side=7,
                     seed=2, workers=2) as loader:
        X, truth = loader.next()
    assert loader.truths == 7 * 7 * 8
    assert X.shape == (3, 3, 28, 28) and truth.shape == (3, 392)
    cells = truth.reshape(3, 49, 8)
    assert (cells[:, :, 0].sum(axis=1) >= 1).all()
    assert ((cells[:, :, 1:4].sum(axis=2) == cells[:, :, 0])).all()     # one class per filled cell


def test_loader_close(dataset):
    loader = Loader(dataset / "train.txt", (32, 32), **SETTINGS, seed=0, workers=2)
    loader.next()
    loader.close()
    loader.close()
    with pytest.raises(DarknetError, match="closed"):
        loader.next()


def test_loader_rejects_empty_list_and_bad_kind(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DarknetError, match="empty"):
        Loader(tmp_path / "empty.txt", (32, 32))
    with pytest.raises(ValueError, match="kind"):
        Loader(["a.jpg"], (32, 32), "tag")
    with pytest.raises(ValueError, match="labels and a Crop"):
        Loader(["a.jpg"], (32, 32), "classification")


def test_loader_each_slot_has_its_own_augmentation(dataset):
    # one image drawn 4 times in a batch: every copy must be jittered differently
    path = labels.read_list(dataset / "train.txt")[0]
    with Loader([path], (32, 32), **SETTINGS, seed=5, workers=2) as loader:
        X, truth = loader.next()
    for i in range(1, 4):
        assert not np.array_equal(X[0], X[i])
        assert not np.array_equal(truth[0], truth[i])
