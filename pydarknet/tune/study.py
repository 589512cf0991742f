"""The study: Optuna's, in a journal file in the study's folder (or any storage URL Optuna takes), and the workers
that run its trials, each a training process of its own (tune/trial.py).

Several `pydarknet tune` processes on one folder share the study: a lock file in the folder serialises what must
happen once (the grid's points enqueued, trials taken, dead drivers' trials recovered), and each trial records the
host and pid of the driver that runs it, so that a driver starting later marks the trials of a dead one FAIL ("driver
died") and runs their points again.
"""
import contextlib
import fcntl
import math
import os
import socket
import threading
import time

from .. import trackers
from ..cfg import read_data
from ..errors import DarknetError, UsageError
from .space import check_space, cfg_values, default_space, parse_space, read_space, sections_read
from .trial import TrialRun, process_started

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
FITNESS = {"map50": ("map", "mAP@0.5"), "coco": ("map_coco", "mAP@[.5:.95]"), "top1": ("top1", "top-1")}
DEFAULT_TRIALS = 20
DEFAULT_ITERATIONS = 500
READY_SECONDS = 120         # how long a worker waits for the study's creator to enqueue its first trials
WORST = 1e30                # what the pruner is told of an infinite validation loss


class TuneError(DarknetError):
    """A study that cannot be run as asked."""


class Plan:
    """What every trial of the study shares: the cfg (its text and parsed sections), the data, the space, the
    budget (M iterations at the cfg's batch B0, reports every K) and the choices of the command line."""

    def __init__(self, datacfg, cfgfile, weights=None, space=None, trials=None, iterations=None, sampler="tpe",
                 pruner="median", prune_on="loss", folder=None, storage=None, jobs=1, gpus=None, seed=0,
                 fitness=None, map_every=None, threads=None, tracker=None):
        if sampler not in SAMPLERS:
            raise UsageError(f"-sampler {sampler}: the samplers are {', '.join(SAMPLERS)}")
        if pruner not in PRUNERS:
            raise UsageError(f"-pruner {pruner}: the pruners are {', '.join(PRUNERS)}")
        if prune_on not in ("loss", "map"):
            raise UsageError(f"-prune_on {prune_on}: the pruner watches loss (the validation loss) or map")
        read_data(datacfg)      # a missing .data file is one line before anything else
        if tracker:
            trackers.require(tracker)
        self.datacfg, self.cfgfile, self.weights = datacfg, cfgfile, weights
        self.sections = sections_read(cfgfile)
        with open(cfgfile, encoding="utf-8", errors="replace") as f:
            self.cfg_text = f.read()
        names = {s.name for s in self.sections}
        self.kind = "detector" if names & {"yolo", "region", "detection"} else "classifier"
        self.fitness = fitness or ("map50" if self.kind == "detector" else "top1")
        if self.fitness not in FITNESS or (self.fitness == "top1") != (self.kind == "classifier"):
            allowed = "map50 or coco" if self.kind == "detector" else "top1"
            raise UsageError(f"-fitness {self.fitness}: a {self.kind} cfg's fitness is {allowed}")
        self.space_text = None
        if space:
            self.params = read_space(space)
        else:
            self.space_text = default_space(self.sections)
            self.params = parse_space(self.space_text, "<default space>")
        self.grid = sampler == "grid"
        check_space(self.params, self.sections, cfgfile, self.grid)
        net = self.sections[0]
        self.batch = net.int("batch", 1)
        self.max_batches = net.int("max_batches", 0)
        self.burn_in = net.int("burn_in", 0)
        self.steps = net.ints("steps", []) if net.str("policy", "constant") == "steps" else []
        self.iterations = iterations or min(DEFAULT_ITERATIONS, self.max_batches or DEFAULT_ITERATIONS)
        self.map_every = map_every or max(1, self.iterations // 3)
        base = os.path.splitext(os.path.basename(cfgfile))[0]
        self.name = base
        self.folder = folder or os.path.join("tune", base)
        self.storage_url = storage
        self.trials = trials
        self.sampler_name, self.pruner_name, self.prune_on = sampler, pruner, prune_on
        self.jobs, self.gpus = max(1, jobs), gpus or []
        self.seed = seed
        self.threads = threads or os.cpu_count() or 1
        self.tracker = tracker

    @property
    def journal(self):
        return os.path.join(self.folder, "study.journal")

    @property
    def total(self):
        """The study's trials in all (complete + pruned + failed); a grid without -trials runs until its waiting
        points are done."""
        if self.trials:
            return self.trials
        return math.inf if self.grid else DEFAULT_TRIALS

    @property
    def tpe_startup(self):
        """The trials TPE samples at random before it models the others: min(10, N/2)."""
        return min(10, self.total // 2) if self.total != math.inf else 10

    def storage(self):
        """Optuna's storage: the journal file in the folder, or the URL of -storage."""
        if self.storage_url:
            return self.storage_url
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        return JournalStorage(JournalFileBackend(self.journal))

    def sampler(self):
        import optuna
        if self.sampler_name == "tpe":
            return optuna.samplers.TPESampler(n_startup_trials=self.tpe_startup, seed=self.seed, constant_liar=True)
        return optuna.samplers.RandomSampler(seed=self.seed)    # grid: every point is enqueued, none sampled

    def pruner(self):
        import optuna
        if self.pruner_name == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if self.pruner_name == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=self.map_every, max_resource=self.iterations)
        return optuna.pruners.NopPruner()

    def grid_points(self):
        """Every point of the grid, in order (the last key varies fastest)."""
        points = [{}]
        for param in self.params:
            points = [{**point, param.name: value} for point in points for value in param.grid()]
        return points

    def baseline(self):
        """The cfg's own values, where every searched key has one inside its range: the study's trial 0."""
        values = cfg_values(self.params, self.sections)
        if any(values[p.name] is None or not p.holds(values[p.name]) for p in self.params):
            return None
        return values

    def describe(self):
        """The settings, as printed at the start."""
        lines = [f"tune: study '{self.name}' in {self.folder} "
                 f"({'storage ' + self.storage_url if self.storage_url else 'journal ' + self.journal})"]
        total = "the grid's points" if self.total == math.inf else f"{self.total} trials in all"
        lines.append(f"  {total}, {self.jobs} at a time; each {self.kind} train runs {self.iterations} iterations at "
                     f"batch {self.batch} (a trial at another batch B: {self.iterations}*{self.batch}/B), the cfg's "
                     f"schedule (burn_in, steps) scaled to them")
        lines.append(f"  reports every {self.map_every} iterations and at the last: validation loss and "
                     f"{FITNESS[self.fitness][1]}; fitness: {FITNESS[self.fitness][1]} at the last report")
        if self.sampler_name == "tpe":
            sampler = f"TPE (random for the first {self.tpe_startup} trials, seed {self.seed})"
        else:
            sampler = "grid (its points enqueued once, taken in turn)" if self.grid else f"random (seed {self.seed})"
        watched = "the validation loss" if self.prune_on == "loss" else FITNESS[self.fitness][1]
        pruner = {"median": f"median (after 2 trials, at each report) on {watched}",
                  "hyperband": f"hyperband (from {self.map_every} to {self.iterations} iterations) on {watched}",
                  "none": "none"}[self.pruner_name]
        lines.append(f"  sampler: {sampler}; pruner: {pruner}")
        space = "the default space" if self.space_text else f"{self.params[0].path}"
        lines.append(f"  searching ({space}): " + ", ".join(f"{p.name} {p.text}" for p in self.params))
        return "\n".join(lines)


def shown_values(values):
    """A trial's values as its lines print them: `net.learning_rate=0.0004716, net.batch=32`."""
    return ", ".join(f"{name}={v:.4g}" if isinstance(v, float) else f"{name}={v}" for name, v in values.items())


def driver_id():
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": process_started(pid)}


def driver_gone(driver):
    """Whether the driver a trial records is known to be dead: on this host, its pid no longer names the process
    that started it. A driver on another host cannot be judged from here."""
    if not driver or driver.get("host") != socket.gethostname():
        return False
    started = process_started(driver["pid"])
    return started is None or started != driver.get("started")


class Study:
    """A study's folder, Optuna study and lock; `run()` runs trials until the study has its total."""

    def __init__(self, plan, out):
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.plan, self.out = plan, out
        self.lock_path = os.path.join(plan.folder, "study.lock")
        self.thread_lock = threading.Lock()
        self.stopping = threading.Event()
        self.print_lock = threading.Lock()
        os.makedirs(plan.folder, exist_ok=True)
        if plan.space_text:
            with open(os.path.join(plan.folder, "space.cfg"), "w", encoding="utf-8") as f:
                f.write(plan.space_text)
        with self.locked():
            self.study = self.open_study()
            self.recover()
        self.started = time.time()
        self.done_here = 0

    @contextlib.contextmanager
    def locked(self):
        """The study's lock: this process's threads and every process on this folder, one at a time."""
        with self.thread_lock, open(self.lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def open_study(self):
        """Create the study (then enqueue its first points: the grid, or the cfg's own values as trial 0) or load
        it where another process did; a loaded study's space must be this one's."""
        import optuna
        plan = self.plan
        storage = plan.storage()
        others = set(optuna.get_all_study_names(storage)) - {plan.name}
        if others and not plan.storage_url:     # the trial folders are numbered a study: one study a folder
            raise TuneError(f"{plan.journal} holds the study '{sorted(others)[0]}', not '{plan.name}' (the cfg's "
                            f"name): give this cfg another -study folder")
        try:
            study = optuna.create_study(storage=storage, study_name=plan.name, direction="maximize",
                                        sampler=plan.sampler(), pruner=plan.pruner())
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(storage=storage, study_name=plan.name, sampler=plan.sampler(),
                                      pruner=plan.pruner())
            self.wait_ready(study)
            return study
        study.set_user_attr("space", self.space_signature())
        study.set_user_attr("cfg", os.path.abspath(plan.cfgfile))
        if plan.grid:
            for point in plan.grid_points():
                study.enqueue_trial(point)
        else:
            baseline = plan.baseline()
            if baseline is not None:
                study.enqueue_trial(baseline, user_attrs={"baseline": True})
            else:
                self.say("tune: the cfg's own values are not all inside the space: no baseline trial")
        study.set_user_attr("ready", True)
        return study

    def space_signature(self):
        return {p.name: [p.kind, list(p.args)] for p in self.plan.params}

    def wait_ready(self, study):
        """A loaded study: wait (bounded) for its creator's enqueued points; refuse another space."""
        deadline = time.time() + READY_SECONDS
        while not study.user_attrs.get("ready"):
            if time.time() > deadline:
                raise TuneError(f"{self.plan.folder}: the study '{self.plan.name}' was created but its first trials "
                                f"were never enqueued (its creator died?): remove the folder or the study")
            time.sleep(0.5)
        if study.user_attrs.get("space") != self.space_signature():
            raise TuneError(f"{self.plan.folder}: the study '{self.plan.name}' searches another space "
                            f"({', '.join(study.user_attrs.get('space', {}))}); use another -study folder")

    def recover(self):
        """The RUNNING trials whose driver died (on this host): FAIL "driver died", and their points enqueued
        again."""
        from optuna.trial import TrialState
        storage = self.study._storage
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if driver_gone(trial.user_attrs.get("driver")):
                storage.set_trial_user_attr(trial._trial_id, "reason", "driver died")
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
                self.say(f"tune: trial {trial.number}'s driver (pid {trial.user_attrs['driver']['pid']}) died: "
                         f"FAIL, its point enqueued again")

    def say(self, text):
        with self.print_lock:
            print(text, file=self.out, flush=True)

    def take(self):
        """The next trial (a waiting one first), or None where the study has its total or the grid is done."""
        from optuna.trial import TrialState
        with self.locked():
            trials = self.study.get_trials(deepcopy=False)
            counted = sum(t.state != TrialState.WAITING for t in trials)
            waiting = sum(t.state == TrialState.WAITING for t in trials)
            if self.stopping.is_set() or counted >= self.plan.total or (self.plan.grid and not waiting):
                return None
            trial = self.study.ask()
            trial.set_user_attr("driver", driver_id())
            return trial

    def run(self):
        """Run trials with `jobs` workers until the study has its total; Ctrl-C ends the running trials (FAIL
        "interrupted", their points enqueued again) and raises KeyboardInterrupt. The main thread polls the workers'
        Events: a Thread.join cut by Ctrl-C may leave the thread looking ended while it still runs."""
        ended = [threading.Event() for _ in range(self.plan.jobs)]
        for k, event in enumerate(ended):
            threading.Thread(target=self.worker, args=(k, event), daemon=True).start()
        try:
            while not all(event.is_set() for event in ended):
                time.sleep(0.2)
        except KeyboardInterrupt:
            self.stopping.set()
            while not all(event.is_set() for event in ended):
                time.sleep(0.2)
            raise

    def worker(self, k, ended):
        """Worker k: trials one after another, on its share of the threads (and GPU k of -gpus); `ended` is set
        when it stops."""
        plan = self.plan
        threads = max(1, plan.threads // plan.jobs)
        gpu = plan.gpus[k % len(plan.gpus)] if plan.gpus else None
        try:
            while True:
                trial = self.take()
                if trial is None:
                    return
                try:
                    self.run_trial(trial, threads, gpu)
                except Exception as e:      # noqa: BLE001  a driver-side failure of one trial: FAIL, the study goes on
                    self.finish(trial, "fail", reason=f"the driver failed: {type(e).__name__}: {e}")
        finally:
            ended.set()

    def run_trial(self, trial, threads, gpu):
        """One trial: its values, its process, its reports to the pruner, and how it ended."""
        plan = self.plan
        values = {p.name: p.suggest(trial) for p in plan.params}
        run = TrialRun(plan, trial.number, values)
        pid = run.start(threads, gpu)
        trial.set_user_attr("pid", pid)
        trial.set_user_attr("folder", os.path.abspath(run.folder))
        shown = shown_values(values)
        self.say(f"trial {trial.number} started: {shown} ({run.iterations} iterations, pid {pid}, {run.folder})")
        key, reported = FITNESS[plan.fitness][0], set()
        try:
            while True:
                ended = run.finished()
                for record in run.new_reports():
                    value = -record["validation_loss"] if plan.prune_on == "loss" else record.get(key, 0.0)
                    if not math.isfinite(value):    # an infinite loss (a softmax at 0) is the worst, not a NaN median
                        value = -WORST
                    step = run.step_of(record)
                    if step not in reported:        # a rounded step met twice: its first report stands
                        trial.report(value, step)
                        reported.add(step)
                    self.say(f"trial {trial.number}: iteration {record['iteration']}/{run.iterations}, validation "
                             f"loss {record['validation_loss']:.4f}, {FITNESS[plan.fitness][1]} "
                             f"{record.get(key, float('nan')):.4f}")
                    if record["iteration"] < run.iterations and trial.should_prune():
                        run.stop()
                        return self.finish(trial, "pruned", run, pruned_at=record["iteration"])
                if self.stopping.is_set():
                    run.stop()
                    return self.finish(trial, "interrupted", run)
                if ended:
                    break
                time.sleep(0.5)
            if run.process.returncode != 0:
                return self.finish(trial, "fail", run, run.failure())
            if not run.reports or key not in run.reports[-1]:
                return self.finish(trial, "fail", run, f"its run ended without a report (see {run.folder}/train.log)")
            return self.finish(trial, "complete", run)
        finally:
            run.close()

    def finish(self, trial, how, run=None, reason=None, pruned_at=None):
        """Record how the trial ended (its history of reports, iterations, seconds, reason) and tell Optuna."""
        from optuna.trial import TrialState
        plan = self.plan
        key = FITNESS[plan.fitness][0]
        if run is not None:
            history = [[r["iteration"], r["validation_loss"], r.get(key)] for r in run.reports]
            trial.set_user_attr("history", history)
            trial.set_user_attr("iterations", run.last_iteration)
            trial.set_user_attr("seconds", round(time.time() - run.started, 1))
            if run.reports:
                trial.set_user_attr("validation_loss", run.reports[-1]["validation_loss"])
                trial.set_user_attr("map50", run.reports[-1].get("map"))
        if reason or how == "interrupted":
            trial.set_user_attr("reason", reason or "interrupted (Ctrl-C)")
        with self.locked():
            if how == "complete":
                value = run.reports[-1][key]
                self.study.tell(trial, value)
                text = f"complete: {FITNESS[plan.fitness][1]} {value:.4f}, validation loss " \
                       f"{run.reports[-1]['validation_loss']:.4f}"
            elif how == "pruned":
                self.study.tell(trial, state=TrialState.PRUNED)
                text = (f"pruned at its report of iteration {pruned_at} (its process ended at iteration "
                        f"{run.last_iteration})")
            else:
                self.study.tell(trial, state=TrialState.FAIL)
                text = f"FAIL: {reason or 'interrupted (Ctrl-C)'}"
                if how == "interrupted":
                    self.study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
        self.done_here += 1
        self.say(f"trial {trial.number} {text}{self.eta()}")

    def eta(self):
        """`; k trials done, ETA` from this driver's pace."""
        from optuna.trial import TrialState
        finished = sum(t.state.is_finished() for t in self.study.get_trials(deepcopy=False))
        total = self.plan.total
        if total == math.inf:
            total = finished + sum(t.state == TrialState.WAITING for t in self.study.get_trials(deepcopy=False))
        left = max(0, total - finished)
        per = (time.time() - self.started) / max(self.done_here, 1) / self.plan.jobs
        return f" ({finished} of {total} trials done, ETA {int(left * per // 60)}:{int(left * per % 60):02d})"

