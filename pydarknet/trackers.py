"""`-tracker tensorboard|mlflow`: what metrics.jsonl records (trainer.py's Metrics), sent to an experiment tracker
too, with the cfg and the weights the run ended with. Rank 0 alone logs; the trainer closes the tracker before
the command's os._exit.

- tensorboard (tensorboardX): event files in `<run folder>/tensorboard/<experiment>/<run>/`, the folder of
  metrics.jsonl; the cfg's text and the final weights' path as text.
- mlflow: `sqlite:///<run folder>/mlflow.db` (artifacts in `<run folder>/mlartifacts/`) unless MLFLOW_TRACKING_URI
  names another store; the cfg as an artifact, its [net] keys, the .data file, the starting weights and the seed
  as params, the final weights' path as a tag, the run FINISHED, KILLED (Ctrl-C) or FAILED.

Both log each record's numbers at step = its iteration under the record's keys (a per-layer list, -grad_stats'
delta_rms and update_ratio, as `delta_rms/<layer index>`; a layer without weights has no update ratio and is left
out). The experiment is $PYDARKNET_TRACKER_EXPERIMENT (default: the cfg's name), the run $PYDARKNET_TRACKER_RUN
(default: the cfg's name and the start time); `pydarknet tune` sets both to group its trials by study.
"""
import importlib
import logging
import os
import time

from . import settings
from .cfg import read_cfg
from .errors import DarknetError, UsageError

# each tracker's modules (all of them in its setup.py extra, named as the tracker is) and what the error calls it
PACKAGES = {"tensorboard": (("tensorboardX",), "tensorboardX"),
            "mlflow": (("mlflow.tracking", "mlflow.entities", "sqlalchemy", "alembic"), "MLflow")}
NAMES = tuple(PACKAGES)
UNKNOWN = f"the trackers are {' and '.join(NAMES)}"


def check_name(name):
    """A UsageError, one line naming the trackers, where `name` is none of them."""
    if name not in PACKAGES:
        raise UsageError(f"-tracker {name}: {UNKNOWN}")


def require(name):
    """Import the tracker's packages; where one is not installed, a DarknetError of one line naming the extra that
    installs them (called before training starts)."""
    check_name(name)
    modules, what = PACKAGES[name]
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        raise DarknetError(f'-tracker {name} needs {what}: pip install "pydarknet[{name}]"') from None


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scalars(record):
    """A metrics.jsonl record's numbers by the names the trackers log them under: all but `iteration` (their
    step); each number of a per-layer list as `<key>/<layer index>`, its None (no weights) left out."""
    found = {}
    for key, value in record.items():
        if isinstance(value, (list, tuple)):
            found.update({f"{key}/{i}": v for i, v in enumerate(value) if is_number(v)})
        elif is_number(value) and key != "iteration":
            found[key] = value
    return found


def open_tracker(name, folder, cfgfile, params, iteration):
    """The tracker `name` (TensorBoard or MLflow) of a run whose metrics.jsonl is in `folder`, resumed at
    `iteration` (0: a new run); `params`: what the run was started with (the .data file, the weights, the seed)."""
    require(name)
    base = os.path.splitext(os.path.basename(cfgfile))[0]
    experiment = settings.tracker_experiment() or base
    run = settings.tracker_run() or f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
    kind = TensorBoard if name == "tensorboard" else MLflow
    return kind(folder, os.fspath(cfgfile), {key: str(value) for key, value in params.items()}, experiment, run,
                iteration)


def ending_key(status):
    """The name of the weights' path where the run ended: final_weights, else (Ctrl-C, a NaN stop) last_weights."""
    return "final_weights" if status == "FINISHED" else "last_weights"


class TensorBoard:
    """tensorboardX's SummaryWriter on `<folder>/tensorboard/<experiment>/<run>`; a run resumed at iteration N
    under the same run name hides the events after N, as metrics.jsonl drops its lines (purge_step)."""

    def __init__(self, folder, cfgfile, params, experiment, run, iteration):
        from tensorboardX import SummaryWriter
        self.logdir = os.path.join(folder, "tensorboard", experiment, run)
        self.writer = SummaryWriter(self.logdir, purge_step=iteration + 1 if iteration else None)
        self.step = iteration
        with open(cfgfile, encoding="utf-8", errors="replace") as f:
            self.writer.add_text("cfg", f"{cfgfile}\n\n```\n{f.read()}\n```", iteration)
        self.writer.add_text("params", "  \n".join(f"{key}: {value}" for key, value in params.items()), iteration)

    def log(self, record):
        self.step = record["iteration"]
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, self.step)

    def close(self, status, weights):
        if weights:
            self.writer.add_text(ending_key(status), weights, self.step)
        self.writer.close()         # writes out what its thread still holds


class MLflow:
    """An MLflow run in the experiment (made where it is new; its artifacts beside the sqlite store)."""

    def __init__(self, folder, cfgfile, params, experiment, run, iteration):
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
        uri, artifacts = settings.mlflow_tracking_uri(), None
        if not uri:
            uri = "sqlite:///" + os.path.abspath(os.path.join(folder, "mlflow.db"))
            artifacts = os.path.abspath(os.path.join(folder, "mlartifacts"))
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)    # "Creating initial tables"
        self.client = client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            try:
                ident = client.create_experiment(experiment, artifact_location=artifacts)
            except MlflowException:         # another run (a tune trial) made it first
                ident = client.get_experiment_by_name(experiment).experiment_id
        else:
            ident = found.experiment_id
        self.run_id = client.create_run(ident, run_name=run, tags={"cfg": cfgfile}).info.run_id
        net = read_cfg(cfgfile)[0].options
        everything = {**{f"net.{key}": value for key, value in net.items()}, "cfg": cfgfile, **params,
                      "start_iteration": str(iteration)}
        client.log_batch(self.run_id, params=[Param(key, value) for key, value in everything.items()])
        client.log_artifact(self.run_id, cfgfile)

    def log(self, record):
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, float(value), now, record["iteration"])
                                                    for key, value in scalars(record).items()])

    def close(self, status, weights):
        if weights:
            self.client.set_tag(self.run_id, ending_key(status), weights)
        self.client.set_terminated(self.run_id, status)
