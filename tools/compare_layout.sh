#!/usr/bin/env bash
# tools/compare_layout.sh OLD_REV [NEW_DIR]
#
# Proves that a refactor left pydarknet's behaviour alone: runs one fixed script of 61 pydarknet commands (datasets,
# seeded trainings, detection, evaluation, conversion, export, demo, help, bad input) with the tree of OLD_REV (a
# temporary git worktree) and with NEW_DIR (default: this repository), with the same $PYTHON (python3), and compares
# every file the commands write, byte for byte (symlinks: their targets), and each command's stdout, stderr and
# exit code once timings (seconds, images/s, ETA, FPS, dates) and the trees' paths are masked. Exit 0 when all is
# identical, 1 when something differs, 2 on a set-up error; KEEP_WORK=1 keeps the work folder. About 5 minutes a
# tree on two cores, 2 of them Numba compiling into a fresh cache. Run by hand; not part of the tests.
#
# Determinism. Both trees run in the same folder ($WORK/run, then moved to $WORK/old and $WORK/new), so the absolute
# paths in .data files, lists and symlinks are the same. Training repeats byte for byte with -seed and -threads 2
# (whatever -workers is: README, "What a seed repeats"), on the CPU (PYDARKNET_GPU=cpu, also on a GPU machine).
# Masked rather than skipped: evaluate.py's "N/M images, R images/s, ETA" lines are dropped (written at most once a
# second, so their number varies); chart.png, redrawn at most every 10 s while training, is drawn again at the end.
# Left out: `detector test` on a truncated weights file (the layers it misses get unseeded random weights, so its
# detections differ run to run); the truncated file goes through export and a seeded training instead. The cfgs
# and weights come from OLD_REV; the video, VOC devkit and COCO file are made with cv2 from the run's shapes images.
set -u -o pipefail

die() { echo "compare_layout: $*" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then die "usage: $0 OLD_REV [NEW_DIR]"; fi
PYTHON=${PYTHON:-python3}
REPO=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel) || die "not inside a git repository"
NEW_DIR=$(cd "${2:-$REPO}" && pwd -P) || die "no folder ${2:-}"
OLD_SHA=$(git -C "$REPO" rev-parse --verify --quiet "$1^{commit}") || die "unknown revision $1"
WORK=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/compare_layout.XXXXXX")" && pwd -P)
OLD_DIR=$WORK/old-tree RUN=$WORK/run INPUTS=$WORK/inputs

# shellcheck disable=SC2317  # (run by the trap)
cleanup() {
    git -C "$REPO" worktree remove --force "$OLD_DIR" 2>/dev/null
    git -C "$REPO" worktree prune
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
git -C "$REPO" worktree add --quiet --detach "$OLD_DIR" "$OLD_SHA" || die "cannot add a worktree of $1"

# The same environment for both trees: CPU, 2 threads, no stray settings; bytecode and Numba's cache go to the
# work folder (run_tree sets them), so that neither tree is written to.
export PYDARKNET_GPU=cpu PYDARKNET_THREADS=2 PYTHONHASHSEED=0 LC_ALL=C TZ=UTC MPLBACKEND=Agg
unset PYDARKNET_GPU_MATH PYDARKNET_WINOGRAD_MIN_CHANNELS PYDARKNET_DIRECT_MAX_CHANNELS OMP_NUM_THREADS

# ---- inputs shared by both runs ----
mkdir -p "$INPUTS"
for f in cfg/yolov3-tiny-shapes.cfg weights/yolov3-tiny-shapes.weights cfg/yolov1-tiny-shapes.cfg; do
    git -C "$REPO" show "$OLD_SHA:$f" >"$INPUTS/$(basename "$f")" || die "$f is not in $1"
done
# A 3-layer YOLOv3-tiny-like detector at 64x64: 100 iterations (backups at 100, -map at 100) take seconds.
printf '%s\n' '[net]' batch=4 subdivisions=1 width=64 height=64 channels=3 momentum=0.9 decay=0.0005 \
    learning_rate=0.001 burn_in=10 max_batches=100 policy=steps steps=80 scales=.1 hue=.1 saturation=1.5 \
    exposure=1.5 '[convolutional]' batch_normalize=1 filters=8 size=3 stride=1 pad=1 activation=leaky '[maxpool]' \
    size=2 stride=2 '[convolutional]' batch_normalize=1 filters=16 size=3 stride=1 pad=1 activation=leaky \
    '[maxpool]' size=2 stride=2 '[convolutional]' filters=30 size=1 stride=1 pad=1 activation=linear '[yolo]' \
    mask=0,1,2 'anchors=8,8, 16,16, 32,32' classes=5 num=3 jitter=.1 ignore_thresh=.7 truth_thresh=1 random=0 \
    >"$INPUTS/tiny.cfg"
# A 32x32 classifier (tests/test_classifier.py's) for the shapes-cls dataset.
printf '%s\n' '[net]' batch=16 subdivisions=1 width=32 height=32 channels=3 momentum=0.9 decay=0.0005 \
    learning_rate=0.05 max_batches=6 min_crop=32 max_crop=40 angle=5 hue=.1 saturation=1.5 exposure=1.5 \
    '[convolutional]' batch_normalize=1 filters=8 size=3 stride=1 pad=1 activation=leaky '[maxpool]' size=2 \
    stride=2 '[convolutional]' filters=5 size=1 stride=1 activation=linear '[avgpool]' '[softmax]' >"$INPUTS/cls.cfg"
sed 's/^filters=16$/filters=sixteen/' "$INPUTS/tiny.cfg" >"$INPUTS/bad.cfg"      # a bad cfg line

# Made in the run from the dataset `dataset shapes` wrote, with numpy and cv2 only: an MJPG video of 8 images, a
# VOC devkit of 3 images (one difficult and one unlisted object), a COCO instances file of 3 images (one crowd box).
cat >"$INPUTS/make_inputs.py" <<'EOF'
import json, os
import cv2
names = open("shp160/shapes.names").read().split()
def sample(k):
    boxes = [[float(v) for v in line.split()] for line in open(f"shp160/labels/{k:05d}.txt")]
    return cv2.imread(f"shp160/images/{k:05d}.png"), [(int(c), (x - w / 2) * 160, (y - h / 2) * 160, w * 160,
                                                       h * 160) for c, x, y, w, h in boxes]
video = cv2.VideoWriter("video.avi", cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 160))
for k in range(8):
    video.write(sample(k)[0])
video.release()
voc = "voc/VOCdevkit/VOC2007"
for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
    os.makedirs(f"{voc}/{d}", exist_ok=True)
for k in range(3):
    image, boxes = sample(k)
    cv2.imwrite(f"{voc}/JPEGImages/{k:06d}.jpg", image)
    objects = [(names[c], int(k == 1 and j == 0), x, y, w, h) for j, (c, x, y, w, h) in enumerate(boxes)]
    with open(f"{voc}/Annotations/{k:06d}.xml", "w") as f:
        f.write("<annotation><size><width>160</width><height>160</height><depth>3</depth></size>" + "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x + 1:.0f}</xmin><ymin>{y + 1:.0f}"
            f"</ymin><xmax>{x + w:.0f}</xmax><ymax>{y + h:.0f}</ymax></bndbox></object>"
            for n, d, x, y, w, h in objects + [("dog", 0, 1, 1, 9, 9)]) + "</annotation>\n")
open(f"{voc}/ImageSets/Main/train.txt", "w").write("000000\n000001\n")
open(f"{voc}/ImageSets/Main/test.txt", "w").write("000002\n")
annotations = [dict(id=k * 10 + j, image_id=k, category_id=c + 1, bbox=[x, y, w, h], iscrowd=0)
               for k in (3, 4, 5) for j, (c, x, y, w, h) in enumerate(sample(k)[1])]
annotations[-1]["iscrowd"] = 1
json.dump(dict(images=[dict(id=k, file_name=f"{k:05d}.png", width=160, height=160) for k in (3, 4, 5)],
               categories=[dict(id=i + 1, name=n) for i, n in enumerate(names)], annotations=annotations),
          open("instances.json", "w"))
EOF

# ---- the commands ----
# c NAME [< FILE] ARGS...: `python -m pydarknet ARGS` in $RUN (stdin from FILE, else /dev/null), its command line,
# stdout, stderr and exit code kept in $LOGS/NN-NAME.*. cx is c for a command whose output may change on purpose
# (dataset shapes/shapes-cls help and usage errors, moving onto the common parser): reported, never a failure.
c() {
    local name input=/dev/null
    N=$((N + 1))
    name=$(printf '%02d-%s' "$N" "$1")
    shift
    if [ "${1:-}" = "<" ]; then input=$2; shift 2; fi
    if [ "$input" = /dev/null ]; then echo "$*"; else echo "$* < ${input#"$RUN"/}"; fi >"$LOGS/$name.cmd"
    printf .
    (cd "$RUN" && timeout 600 "$PYTHON" -m pydarknet "$@" <"$input" >"$LOGS/$name.out" 2>"$LOGS/$name.err")
    echo $? >"$LOGS/$name.rc"
}
cx() { c "$@"; touch "$LOGS/$(printf %02d "$N")-$1.expected"; }
in_run() { (cd "$RUN" && "$@") || die "set-up step failed: $*"; }

commands() {
    local ts=(-threads 2 -seed 1) y3=yolov3-tiny-shapes.cfg w3=yolov3-tiny-shapes.weights d160=shp160/shapes.data
    local img=shp160/images/00007.png tw=shp/backup/tiny_final.weights cw=scls/backup/cls.weights
    cp "$INPUTS"/*.cfg "$INPUTS"/*.weights "$RUN"/
    # datasets (the .data files and lists they write hold absolute paths of $RUN, the same in both runs)
    c shapes dataset shapes shp -n 24 -size 64 -seed 1
    c shapes160 dataset shapes shp160 -n 12 -size 160 -seed 2
    c shapes-cls dataset shapes-cls scls -n 48 -size 32 -seed 1
    cx shapes-help dataset shapes --help
    cx shapes-cls-help dataset shapes-cls -h
    cx shapes-bad-n dataset shapes bad -n abc
    cx shapes-bad-flag dataset shapes bad -frob 1
    cx shapes-no-outdir dataset shapes
    cx shapes-cls-bad-size dataset shapes-cls bad -size 8
    in_run "$PYTHON" "$INPUTS/make_inputs.py"
    for d in map resume trunc; do     # .data files of their own, so that each training keeps its own backups
        sed "s#^backup=.*#backup=$RUN/backup-$d#" "$RUN/shp/shapes.data" >"$RUN/$d.data"
    done
    # seeded trainings: backups (100 iterations: tiny.backup, tiny_100, tiny_final), the chart, -map, a resume from
    # a backup that continues the chart, a classifier with its per-epoch backups
    c train detector train shp/shapes.data tiny.cfg "${ts[@]}" -chart chart.png
    in_run cp chart.png chart-first.png
    c train-map detector train map.data tiny.cfg "${ts[@]}" -map -workers 1 -chart chart-map.png
    c train-resume detector train resume.data tiny.cfg shp/backup/tiny_100.weights "${ts[@]}" -max_batches 110
    c cls-train classifier train scls/shapes-cls.data cls.cfg "${ts[@]}" -max_batches 6 -chart chart-cls.png
    c cls-valid classifier valid scls/shapes-cls.data cls.cfg "$cw"
    c cls-predict classifier predict scls/shapes-cls.data cls.cfg "$cw" scls/images/00003_cross.png
    c cls-predict-t2 classifier predict scls/shapes-cls.data cls.cfg scls/backup/cls_1.weights \
        scls/images/00004_ring.png -t 2
    c cls-label classifier label scls/shapes-cls.data cls.cfg "$cw"
    # detection, on the shipped shapes weights (real detections) and on the tiny trained ones
    c test detector test "$d160" "$y3" "$w3" "$img" -ext_output -out test
    c test-tiny detector test shp/shapes.data tiny.cfg "$tw" shp/images/00001.png -thresh .01 -out test-tiny
    in_run sh -c "sed -n 1,4p shp160/valid.txt >list.txt && mkdir -p sl/images && cp $img sl/images/"
    c test-json "<" "$RUN/list.txt" detector test "$d160" "$y3" "$w3" -ext_output -dont_show -out result.json
    c test-labels detector test "$d160" "$y3" "$w3" sl/images/00007.png -save_labels -thresh .3 -out test-labels
    c detect detect "$y3" "$w3" "$img" -thresh .4
    c valid detector valid "$d160" "$y3" "$w3"
    c valid-out detector valid "$d160" "$y3" "$w3" -out mine_
    c recall detector recall "$d160" "$y3" "$w3"
    c map detector map "$d160" "$y3" "$w3"
    c map-thresh detector map "$d160" "$y3" "$w3" -thresh .5 -iou_thresh .75
    c demo detector demo "$d160" "$y3" "$w3" video.avi -out_filename demo.avi -dont_show -thresh .3
    c export export "$y3" "$w3" shapes.onnx
    c export-decode export tiny.cfg "$tw" tiny.onnx -decode -batch 2
    # weights files, and Darknet's v1 verbs
    c partial partial "$y3" "$w3" shapes.conv.9 9
    c randweights randweights tiny.cfg rand.weights -seed 3
    c randweights-v1 randweights yolov1-tiny-shapes.cfg v1.weights
    c yolo-test yolo test yolov1-tiny-shapes.cfg v1.weights "$img" -out yolo-test
    # anchors (they write anchors.txt and counters_per_class.txt in the working folder), conversions, checks
    c anchors detector calc_anchors shp/shapes.data -width 64 -height 64 -num_of_clusters 3 -seed 1
    in_run sh -c "mv anchors.txt anchors-1.txt && mv counters_per_class.txt counters-1.txt"
    c anchors-show detector calc_anchors "$d160" -width 160 -height 160 -num_of_clusters 6 -show
    c from-voc dataset from-voc voc/VOCdevkit vocout -names shp160/shapes.names
    c from-voc-difficult dataset from-voc voc/VOCdevkit vocout2 -names shp160/shapes.names -difficult
    c from-coco dataset from-coco instances.json shp160/images cocoout
    c from-coco-valid dataset from-coco instances.json shp160/images cocoout -list valid
    c check dataset check shp/shapes.data tiny.cfg
    c check-voc-fast dataset check vocout/voc.data -fast
    in_run sh -c "echo '7 0.5 0.5 1.5 0.1' >>voc/VOCdevkit/VOC2007/labels/000002.txt"    # a bad class and width
    c check-bad-label dataset check vocout/voc.data "$y3"
    # help
    c help -h
    c no-args
    c help-train detector train --help
    c help-classifier classifier --help
    c help-test detector test --help
    c help-export export --help
    # bad input: stderr and exit code
    c bad-missing-weights detector test "$d160" "$y3" nosuch.weights "$img"
    c bad-missing-image detector test "$d160" "$y3" "$w3" nosuch.png
    c bad-cfg-line randweights bad.cfg bad.weights
    c bad-command frobnicate
    c bad-detector-verb detector frob "$d160"
    c bad-thresh detector test "$d160" "$y3" "$w3" "$img" -thresh abc
    c bad-partial-n partial "$y3" "$w3" out.weights nine
    # A truncated weights file: an error where every weight is needed (export), a warning in a seeded training (the
    # layers it leaves out start from -seed). Not `detector test`: it would run on unseeded random weights.
    in_run sh -c "head -c 3000 $w3 >truncated.weights && head -c 600 $tw >truncated-tiny.weights"
    c bad-truncated-export export "$y3" truncated.weights truncated.onnx
    c truncated-train detector train trunc.data tiny.cfg truncated-tiny.weights "${ts[@]}" -clear -max_batches 3 \
        -chart chart-trunc.png
    c bad-missing-data detector train nosuch.data tiny.cfg "${ts[@]}"
    c bad-yolo-valid yolo valid yolov1-tiny-shapes.cfg v1.weights
    c bad-unsupported detector test "$d160" "$y3" "$w3" "$img" -benchmark -prefix x -out unsupported
}

# run_tree LABEL TREE: the commands with TREE's package, in $RUN, which then becomes $WORK/LABEL.
run_tree() {
    local label=$1 tree=$2 start=$SECONDS found
    N=0 LOGS=$WORK/$label-logs
    rm -rf "$RUN" && mkdir -p "$RUN" "$LOGS"
    export PYTHONPATH=$tree NUMBA_CACHE_DIR=$WORK/$label-cache/numba PYTHONPYCACHEPREFIX=$WORK/$label-cache/pyc
    found=$(cd "$RUN" && "$PYTHON" -c "import pydarknet; print(pydarknet.__file__)") || die "$label: no pydarknet"
    case $found in "$tree"/*) ;; *) die "$label: $PYTHON imports pydarknet from $found, not from $tree" ;; esac
    printf '%s: %s, imports %s\n%s: ' "$label" "$tree" "$found" "$label"
    commands
    echo " $N commands in $((SECONDS - start)) s"
    mv "$RUN" "$WORK/$label"
}

# Timings and the trees' and work folder's paths out of a command's output. Progress lines are dropped.
mask() {
    sed -E -e "s#$OLD_DIR#<TREE>#g; s#$NEW_DIR#<TREE>#g; s#$WORK#<WORK>#g" \
        -e '/^[0-9]+\/[0-9]+ images, .* images\/s, ETA /d' \
        -e 's/[0-9]+(\.[0-9]+)?( ?)(seconds|Seconds|ms|s|min|images\/s|frames\/s)([^[:alnum:]]|$)/<T>\2\3\4/g' \
        -e 's/ETA [0-9:]+/ETA <T>/g; s/FPS:[0-9.]+/FPS:<N>/g' \
        -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9.]+)?/<DATE>/g' "$1"
}

echo "comparing $1 ($OLD_SHA) with $NEW_DIR, $PYTHON ($("$PYTHON" --version 2>&1)), work folder $WORK"
run_tree old "$OLD_DIR"
run_tree new "$NEW_DIR"

# ---- 1. the files written ----
differ=0 expected=0 nfiles=0
list_files() { (cd "$1" && find . \( -type f -o -type l \) | sed 's#^\./##' | sort); }
while read -r f; do
    nfiles=$((nfiles + 1)) a=$WORK/old/$f b=$WORK/new/$f
    if [ -L "$a" ] || [ -L "$b" ]; then
        [ "$(readlink "$a")" = "$(readlink "$b")" ] && continue
        echo "DIFFERS: file $f: links to $(readlink "$a") / $(readlink "$b")"
    elif ! cmp -s "$a" "$b"; then
        echo "DIFFERS: file $f: $(cmp "$a" "$b" 2>&1 | sed "s#$WORK/##g")"
        if grep -qI . "$a" && grep -qI . "$b"; then diff -u --label "old/$f" --label "new/$f" "$a" "$b" | head -12; fi
    else
        continue
    fi
    differ=$((differ + 1))
done < <(comm -12 <(list_files "$WORK/old") <(list_files "$WORK/new"))
while read -r f; do
    differ=$((differ + 1))
    echo "DIFFERS: $f (a file written by one tree only)"
done < <(comm -3 <(list_files "$WORK/old") <(list_files "$WORK/new") |
         sed 's/^\t/new only: /; /^new only/!s/^/old only: /')

# ---- 2. each command's output and exit code ----
for cmd in "$WORK"/old-logs/*.cmd; do
    name=$(basename "$cmd" .cmd)
    report=$(for s in out err rc; do
        diff -u --label "old $name.$s" --label "new $name.$s" <(mask "$WORK/old-logs/$name.$s") \
            <(mask "$WORK/new-logs/$name.$s" 2>/dev/null) | head -16
    done)
    [ -z "$report" ] && continue
    if [ -e "$WORK/old-logs/$name.expected" ]; then
        expected=$((expected + 1))
        echo "expected to differ: $name: pydarknet $(cat "$cmd")"
    else
        differ=$((differ + 1))
        echo "DIFFERS: $name: pydarknet $(cat "$cmd")"
    fi
    echo "$report"
done

echo "summary: $N commands, $nfiles files compared: $differ differences" \
    "($expected more in the commands expected to differ)"
if [ "$differ" -eq 0 ]; then echo "identical"; exit 0; fi
exit 1
