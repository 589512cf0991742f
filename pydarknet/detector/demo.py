"""`detector demo`: AlexeyAB's demo.c on a video file or a camera, headless: every frame detected, printed and, with
`-out_filename OUT`, drawn as `detector test` draws and written to OUT (.avi: MJPG, .mp4: mp4v).

Three threads, as demo.c has: a reader (decode, letterbox), the main thread (the network alone) and a writer
(boxes and NMS from a copy of the heads, printing, drawing, encoding), joined by small bounded queues so that the
network never waits on the video. Per frame it
prints `Objects:`, the objects as `detector test` does and demo.c's `FPS:%.1f \\t AVG_FPS:%.1f`; the closing line
(frames, seconds, frames/s) and `Saved OUT` go to stderr. OUT is written under a temp name beside it and renamed into
place at the end, after Ctrl-C too (the frames detected so far), so that no half-written video is ever left.
"""
import dataclasses
import os
import queue
import sys
import threading
import time

import cv2
import numpy as np

from ..cfg import read_data, read_names
from ..data.check import warn_classes_mismatch
from .pipeline import class_count, network_boxes, network_input
from ..network import load_network
from ..errors import DarknetError
from ..draw import bbox_tuple, box_edges, draw_detections
from ..image import image_from_array
from .test import print_detections

CODECS = {".avi": "MJPG", ".mp4": "mp4v"}
DEFAULT_FPS = 25        # demo.c's src_fps when the stream does not say
NMS = .45
QUEUE_FRAMES = 3        # frames waiting between two stages: enough to ride out a slow frame, little memory
END = None              # the item that closes a queue
POLL_S = .1             # how often a blocked put looks whether the other side has gone
SWITCH_S = 2e-4         # how long a thread in Python code may keep the network's thread waiting (default 5 ms)
BACKGROUND_NICE = 10    # reader and writer, once the network has waited on them (see Background)
STARVED_S = .02         # a wait this long for a frame or for room means the background threads are starved


@dataclasses.dataclass
class DemoResult:
    frames: int             # frames detected (and written, with an output)
    seconds: float          # from the first frame detected to the last
    saved: str = None       # the video written, if any

    @property
    def fps(self):
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class FpsClock:
    """demo.c's two numbers: fps, a running average (x .9 + this frame's x .1) of the rate between frames, and
    avg_fps, the frames of the last full 3 s over those seconds."""

    def __init__(self):
        self.fps = self.avg_fps = 0.0
        self.before = self.window_start = time.perf_counter()
        self.window_frames = 0

    def tick(self):
        after = time.perf_counter()
        self.fps = self.fps * .9 + .1 / max(after - self.before, 1e-9)
        self.before = after
        self.window_frames += 1
        if after - self.window_start >= 3.0:
            self.avg_fps = self.window_frames / (after - self.window_start)
            self.window_frames, self.window_start = 0, after


class Stage(threading.Thread):
    """A pipeline thread that keeps its exception for the main thread to re-raise, and always closes its output
    queue (with END), so that whoever reads it never waits for ever."""

    def __init__(self, name, work, output=None, stop=None, background=None):
        super().__init__(name=name, daemon=True)
        self.work, self.output, self.stop, self.background = work, output, stop, background
        self.error = None

    def run(self):
        try:
            if self.background is not None:
                self.background.join()
            self.work()
        except BaseException as e:  # noqa: BLE001  (whatever it is, the main thread re-raises it in finish)
            self.error = e
        finally:
            if self.output is not None:
                put(self.output, END, lambda: self.stop.is_set())

    def finish(self):
        self.join()
        if self.error is not None:
            raise self.error


class Background:
    """The reader's and writer's scheduling. They start at SCHED_IDLE (Linux), so that decoding and encoding run
    only on cores the network leaves idle instead of delaying one of its kernel threads (which stalls the other at
    the kernel's end). The first time the network has to wait on them (a machine busy with other work leaves no
    core idle, and idle threads would starve) both go back to the normal scheduler at nice BACKGROUND_NICE."""

    def __init__(self):
        self.threads, self.lock, self.raised = [], threading.Lock(), False

    def join(self):
        """Called by each background thread as it starts."""
        with self.lock:
            self.threads.append(threading.get_native_id())
            self._set(self.threads[-1], idle=not self.raised)

    def starved(self):
        """The network waited on a background thread: give them their normal share of the cores."""
        with self.lock:
            if not self.raised:
                self.raised = True
                for thread in self.threads:
                    self._set(thread, idle=False)

    @staticmethod
    def _set(thread, idle):
        try:
            if idle:
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
            else:
                os.sched_setscheduler(thread, os.SCHED_OTHER, os.sched_param(0))
                os.setpriority(os.PRIO_PROCESS, thread, BACKGROUND_NICE)
        except (AttributeError, OSError):      # not Linux, or not allowed: the plain priority
            pass


def put(q, item, gone, waiting=None):
    """q.put that gives up (returns False) once gone() says the reader will take nothing more; `waiting` is told
    when the put had to wait STARVED_S."""
    if waiting is not None:
        try:
            q.put(item, timeout=STARVED_S)
            return True
        except queue.Full:
            waiting()
    while True:
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            if gone():
                return False


def get(q, waiting):
    """q.get, telling `waiting` when it had to wait STARVED_S."""
    try:
        return q.get(timeout=STARVED_S)
    except queue.Empty:
        waiting()
        return q.get()


def open_source(source):
    """The capture and its first frame; a file that is not there, a camera that is not, or a stream with no
    frame is a DarknetError naming it."""
    if isinstance(source, int):
        what = f"camera {source}"
        capture = cv2.VideoCapture(source)
    else:
        what = os.fsdecode(source)
        if not os.path.isfile(what):
            raise DarknetError(f"{what}: no such video file")
        capture = cv2.VideoCapture(what)
    if not capture.isOpened():
        capture.release()
        raise DarknetError(f"{what}: cannot open it" + (" (no such camera)" if isinstance(source, int) else
                                                        " (not a video OpenCV can read)"))
    ok, frame = capture.read()
    if not ok:
        capture.release()
        raise DarknetError(f"{what}: no frame could be read")
    return capture, frame


def check_output(out_filename):
    """OUT's extension and folder, checked before anything slow happens."""
    ext = os.path.splitext(out_filename)[1].lower()
    if ext not in CODECS:
        raise DarknetError(f"{out_filename}: unknown video extension '{ext}' (.avi writes MJPG, .mp4 mp4v)")
    folder = os.path.dirname(os.path.abspath(out_filename))
    if not os.path.isdir(folder):
        raise DarknetError(f"{out_filename}: cannot write it: no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise DarknetError(f"{out_filename}: cannot write it: folder {folder} is not writable")


def temp_name(out_filename):
    """A hidden name beside OUT that keeps its extension (OpenCV picks the container from it)."""
    folder, name = os.path.split(os.path.abspath(out_filename))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.tmp{os.getpid()}{ext}")


def open_writer(out_filename, capture, frame):
    """The VideoWriter on OUT's temp name, at the source's fps and frame size; (writer, temp path)."""
    tmp = temp_name(out_filename)
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps > 0 and fps == fps else DEFAULT_FPS
    codec = CODECS[os.path.splitext(out_filename)[1].lower()]
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*codec), fps, (frame.shape[1], frame.shape[0]))
    if not writer.isOpened():
        writer.release()
        remove_quietly(tmp)
        raise DarknetError(f"{out_filename}: OpenCV cannot write a {codec} video there")
    return writer, tmp


def remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def shown(dets, thresh, classes):
    """The detections draw_detections draws (some class above thresh), in order: one numpy test instead of its
    Python loop over every box and class (random or young weights leave hundreds of boxes above thresh)."""
    return dets[(dets.prob[:, :classes] > thresh).any(axis=1)]


def bgr_frame(im):
    """to_bgr_uint8 (save_image's pixels) without its clip and NaN passes, a third of the writer's time: a decoded
    frame and draw_detections' colours are finite and within [0, 1] already."""
    u8 = (im * np.float32(255)).astype(np.uint8)
    return cv2.merge((u8[2], u8[1], u8[0]))


def detection_lines(dets, thresh, names, classes, w, h):
    """The lines draw_detections returns, without drawing (no -out_filename: nothing is drawn)."""
    lines = []
    for det in dets:
        hits = [j for j in range(classes) if det.prob[j] > thresh]
        if hits:
            edges = box_edges(bbox_tuple(det.bbox), w, h)
            lines.extend((names[j], float(det.prob[j]), *edges) for j in hits)
    return lines


@dataclasses.dataclass
class Options:
    thresh: float = .5
    hier_thresh: float = .5
    ext_output: bool = False


def read_frames(capture, first, net, frames, stop):
    """The reader: decode, then to a pydarknet image and letterboxed, until the video ends or stop is set."""
    frame = first
    while frame is not None and not stop.is_set():
        im = image_from_array(frame)
        if not put(frames, (im, network_input(net, im)), stop.is_set):
            return
        ok, frame = capture.read()
        frame = frame if ok else None


def post_frames(net, writer, detected, options, names, classes, written):
    """The writer: per frame, in order, the boxes and NMS from the heads the network left for it (so the network
    is already on the next frame), demo.c's printing, then drawing as `detector test` draws and encoding."""
    clock = FpsClock()
    while True:
        item = detected.get()
        if item is END:
            return
        im, heads = item
        dets = shown(network_boxes(net, im, options.thresh, options.hier_thresh, NMS, heads=heads), options.thresh,
                     classes)
        h, w = im.shape[1:]
        if writer is not None:
            lines = draw_detections(im, dets, options.thresh, names, classes)
            writer.write(bgr_frame(im))
        else:
            lines = detection_lines(dets, options.thresh, names, classes, w, h)
        written[0] += 1
        print("Objects:\n")
        print_detections(lines, options.ext_output, w, h)
        print(f"\nFPS:{clock.fps:.1f} \t AVG_FPS:{clock.avg_fps:.1f}", flush=True)
        clock.tick()


def detect_frames(net, frames, detected, writer_stage, background):
    """The main thread's loop: the network on each frame, its heads handed to the writer; returns (frames,
    seconds). A wait on the reader (after the first frame) or the writer tells `background` they are starved."""
    start, count = time.perf_counter(), 0
    while True:
        item = get(frames, background.starved) if count else frames.get()
        if item is END:
            return count, time.perf_counter() - start
        im, sized = item
        net.predict(sized)
        if not put(detected, (im, net.head_snapshot()), lambda: not writer_stage.is_alive(), background.starved):
            writer_stage.finish()       # the writer failed: its error
        count += 1


def run_demo(datacfg, cfgfile, weightfile, source, out_filename=None, thresh=.5, hier_thresh=.5,
             ext_output=False):
    """AlexeyAB's `detector demo` on `source` (a video path or a camera index); returns a DemoResult.

    Ctrl-C saves the frames detected so far into OUT and re-raises KeyboardInterrupt; any error leaves no file."""
    if out_filename is not None:
        out_filename = os.fsdecode(out_filename)
        check_output(out_filename)
    data = read_data(datacfg)
    names = read_names(data.file_of("names", "data/names.list"))
    print("Demo")
    print(f"video file: {os.fsdecode(source)}" if not isinstance(source, int) else f"Webcam index: {source}")
    capture, first = open_source(source)
    try:
        net = load_network(cfgfile, weightfile, verbose=True, complete=True)
        warn_classes_mismatch(data, cfgfile)
        classes = class_count(net)
        if len(names) < classes:
            raise DarknetError(f"{datacfg}: names file has {len(names)} names, the network detects {classes} classes")
        writer, tmp = open_writer(out_filename, capture, first) if out_filename else (None, None)
        if writer is None:
            print("pydarknet: no -out_filename: the frames are detected and printed, not drawn or saved",
                  file=sys.stderr)
        options = Options(thresh, hier_thresh, ext_output)
        frames, seconds = run_pipeline(net, capture, first, writer, tmp, out_filename, options, names, classes)
    finally:
        capture.release()
    print(f"Demo: {frames} frames in {seconds:.2f} s, {frames / seconds if seconds > 0 else 0:.1f} frames/s",
          file=sys.stderr)
    return DemoResult(frames, seconds, out_filename)


def run_pipeline(net, capture, first, writer, tmp, out_filename, options, names, classes):
    """The three threads, then OUT renamed into place (also after Ctrl-C, which is re-raised); an error removes
    the temp file. OpenCV runs on one thread here: decoding and encoding are two of the three stages already."""
    stop = threading.Event()
    frames, detected = queue.Queue(QUEUE_FRAMES), queue.Queue(QUEUE_FRAMES)
    written = [0]
    background = Background()
    reader = Stage("demo-reader", lambda: read_frames(capture, first, net, frames, stop), frames, stop, background)
    writer_stage = Stage("demo-writer", lambda: post_frames(net, writer, detected, options, names, classes, written),
                         background=background)
    cv_threads, switch = cv2.getNumThreads(), sys.getswitchinterval()
    cv2.setNumThreads(1)
    sys.setswitchinterval(SWITCH_S)
    interrupted = None
    try:
        reader.start()
        writer_stage.start()
        try:
            result = detect_frames(net, frames, detected, writer_stage, background)
        except KeyboardInterrupt as e:      # keep what was detected: the writer drains its queue below
            interrupted = e
        finally:
            stop.set()
            put(detected, END, lambda: not writer_stage.is_alive())
            writer_stage.join()
            reader.join()
        writer_stage.finish()       # a thread's error, now that both have stopped
        reader.finish()
        if writer is not None:
            writer.release()
            os.replace(tmp, out_filename)
            print(f"Saved {written[0]} frames to {out_filename}", file=sys.stderr)
    finally:
        cv2.setNumThreads(cv_threads)
        sys.setswitchinterval(switch)
        if writer is not None:
            writer.release()
            remove_quietly(tmp)
    if interrupted is not None:
        raise interrupted
    return result
