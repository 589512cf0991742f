"""One trial of a study: its folder (the cfg with the trial's values, a .data copy whose backup= is the folder, its
chart and metrics.jsonl), its `detector train` or `classifier train` process, and what that process reports."""
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time

from .. import files
from ..cfg import read_data
from .space import cfg_with_values

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.5
STOP_SECONDS = 10          # a trial asked to stop (SIGINT) is killed after this long
# the .data keys that name files; a trial's copy names them absolutely (it lies in the trial's folder)
DATA_PATHS = ("train", "valid", "names", "labels", "eval", "results")


def die_with_parent(parent):
    """The trial process's pre-exec: the kernel kills it when the driver dies (even by SIGKILL), and it stops at
    once where the driver had died before that took hold (Linux: PR_SET_PDEATHSIG)."""
    def prepare():
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):       # not Linux: the parent check alone
            pass
        if os.getppid() != parent:
            os._exit(1)
    return prepare


def process_started(pid):
    """A process's start time (clock ticks since boot, /proc's field 22): a pid and its start time name one
    process, where a pid alone may have been given to another since. None where there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def data_copy(datacfg, folder):
    """The .data file's text with its file keys made absolute and backup= the trial's folder."""
    options = read_data(datacfg)
    lines = []
    for key, value in options.items():
        if key in DATA_PATHS and value:
            value = os.path.abspath(options.path_of(key, value))
        if key != "backup":
            lines.append(f"{key} = {value}")
    lines.append(f"backup = {os.path.abspath(folder)}")
    return "\n".join(lines) + "\n"


class TrialRun:
    """A trial's training process and its reports. `plan` is the study's Plan (tune/study.py); `values` the trial's
    {param name: value}; `number` its number."""

    def __init__(self, plan, number, values):
        self.plan, self.number, self.values = plan, number, values
        self.folder = os.path.join(plan.folder, f"trial-{number:04d}")
        batch = values.get("net.batch", plan.batch)
        self.scale = batch / plan.batch        # a trial at batch B: M*B0/B iterations, reports at equal images
        self.iterations = max(1, round(plan.iterations / self.scale))
        self.every = max(1, round(plan.map_every / self.scale))
        self.reports, self.offset, self.process, self.last_iteration = [], 0, None, 0

    def write_files(self):
        """The trial's cfg and .data copy in its folder."""
        plan = self.plan
        factor = self.iterations / max(plan.max_batches, 1)
        schedule = {"max_batches": self.iterations, "burn_in": round(plan.burn_in * factor)}
        if plan.steps:
            schedule["steps"] = ",".join(str(max(1, round(s * factor))) for s in plan.steps)
        os.makedirs(self.folder, exist_ok=True)
        for stale in ("metrics.jsonl", "chart.json"):     # a folder left by an earlier study of the same name
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.folder, stale))
        self.cfg = os.path.join(self.folder, os.path.basename(plan.cfgfile))
        self.data = os.path.join(self.folder, os.path.basename(plan.datacfg))
        files.write_text(self.cfg, cfg_with_values(plan.cfg_text, self.values, plan.params, plan.sections, schedule))
        files.write_text(self.data, data_copy(plan.datacfg, self.folder))

    def training_words(self, threads, gpu):
        """The trial's `python -m pydarknet detector|classifier train ...` line."""
        plan = self.plan
        words = [sys.executable, "-m", "pydarknet", plan.kind, "train", self.data, self.cfg]
        if plan.weights:
            words += [os.path.abspath(plan.weights), "-clear"]
        words += ["-map_every", str(self.every), "-seed", str(plan.seed), "-threads", str(threads),
                  "-chart", os.path.join(self.folder, "chart.png"), "-workers", "2"]
        if gpu is not None:
            words += ["-i", str(gpu)]
        if plan.tracker:
            words += ["-tracker", plan.tracker]
        return words

    def start(self, threads, gpu=None):
        """The training process, its output in the folder's train.log."""
        self.write_files()
        env = dict(os.environ, PYDARKNET_TRACKER_EXPERIMENT=self.plan.name,
                   PYDARKNET_TRACKER_RUN=f"trial-{self.number:04d}")
        if self.plan.tracker == "mlflow" and "MLFLOW_TRACKING_URI" not in env:
            env["MLFLOW_TRACKING_URI"] = f"sqlite:///{os.path.abspath(os.path.join(self.plan.folder, 'mlflow.db'))}"
        self.log = open(os.path.join(self.folder, "train.log"), "wb")
        self.process = subprocess.Popen(self.training_words(threads, gpu), stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                        preexec_fn=die_with_parent(os.getpid()))
        self.started = time.time()
        return self.process.pid

    def new_reports(self):
        """The reports (records with a validation loss) metrics.jsonl gained since the last call; the iteration
        reached so far is kept."""
        found = []
        try:
            with open(os.path.join(self.folder, "metrics.jsonl"), "rb") as f:
                f.seek(self.offset)
                text = f.read()
        except FileNotFoundError:
            return found
        complete = text[:text.rfind(b"\n") + 1]         # a line being written is read next time
        self.offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            record = json.loads(line)
            self.last_iteration = record["iteration"]
            if "validation_loss" in record:
                found.append(record)
                self.reports.append(record)
        return found

    def step_of(self, record):
        """A report's step for the pruner: the iteration in the cfg's batch (equal steps, equal images)."""
        return round(record["iteration"] * self.scale)

    def finished(self):
        return self.process.poll() is not None

    def stop(self):
        """End the process: SIGINT (it saves its weights and stops), SIGKILL after STOP_SECONDS."""
        if self.process is None or self.finished():
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def close(self):
        self.stop()
        self.log.close()

    def failure(self):
        """Why a finished process failed, in one line: its last `pydarknet:` line, else its exit."""
        code = self.process.returncode
        try:
            with open(os.path.join(self.folder, "train.log"), "rb") as f:
                f.seek(max(0, os.path.getsize(f.name) - 65536))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            lines = []
        said = [line for line in lines if line.startswith("pydarknet:")]
        if said:
            return said[-1][len("pydarknet:"):].strip()
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}" + (f"; its last line: {lines[-1].strip()}" if lines else "")
