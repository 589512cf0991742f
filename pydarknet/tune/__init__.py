"""`pydarknet tune`: hyper-parameter search on Optuna over a Darknet cfg. space.py reads SPACE files and writes a
trial's cfg, trial.py runs one trial's training process, study.py the study and its workers, report.py what the
study leaves in its folder (trials.csv, best.cfg, the pictures)."""
import sys

from ..errors import DarknetError

TUNE_EXTRA = 'pip install "pydarknet[tune]"'


def require_optuna():
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise DarknetError(f"pydarknet tune needs Optuna: {TUNE_EXTRA}") from None


def tune(datacfg, cfgfile, weights=None, out=None, **options):
    """Run (or go on with) the study of `cfgfile` on `datacfg`: Plan's keyword arguments (space, trials,
    iterations, sampler, pruner, prune_on, folder, storage, jobs, gpus, seed, fitness, map_every, threads,
    tracker). Every check is done before the study's folder is created. Returns the best FrozenTrial (None where no
    trial completed); Ctrl-C ends the running trials, leaves the study resumable and raises KeyboardInterrupt."""
    require_optuna()
    from .report import write_outputs
    from .study import Plan, Study
    out = out or sys.stdout
    plan = Plan(datacfg, cfgfile, weights, **options)
    study = Study(plan, out)
    print(plan.describe(), file=out, flush=True)
    try:
        study.run()
    except KeyboardInterrupt:
        write_outputs(study.study, plan, out)
        raise KeyboardInterrupt(f"the running trials were ended and their points enqueued again; the same command "
                                f"goes on with the study in {plan.folder}") from None
    return write_outputs(study.study, plan, out)
