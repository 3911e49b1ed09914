"""Console scripts: ``glacier-simulate``, ``glacier-train`` and ``glacier-invert``.

Each script is a thin wrapper around a Hydra app:

1. The command line is checked first: the overrides are composed with Hydra's compose API and
   merged into the schemas of ``glacier.config``; an unknown key, a value of the wrong type or
   an unknown group option is reported as one paragraph (what, the valid keys or options, how
   to fix it) with exit status 2, before Hydra creates a run directory. Command lines with
   Hydra's own flags (``--help``, ``--cfg``, ``-m``, ``--info``, ...) go to Hydra unchecked;
   ``--config-path``/``--config-name`` are checked against that config (a relative
   ``--config-path`` is taken from the current directory).
2. The ``@hydra.main`` task builds the domain, physics and solver settings from the config
   (``glacier.config``), runs ``glacier.progress.run_in_intervals`` (``simulation.run`` with a
   progress bar), and writes ``simulation.nc`` and ``provenance.json`` into Hydra's run
   directory. Errors of the package (``glacier.errors.GlacierError``) are printed as one
   paragraph and end the process with their exit status (2: config or input, 3: numerics).

``glacier-train``'s task (``run_train``) builds the twin experiment, the law and the
``train.Trainer`` from the config, runs it with a progress bar, checkpoints (every
``train.checkpoint_every`` epochs and when SIGINT / SIGTERM or ``train.stop_after`` stops it
between epochs; exit 130 / 143 / 0), and writes ``training.nc``, ``law.nc``, ``simulation.nc``,
``loss.png``, ``law.png`` and ``provenance.json``. ``train.resume=true`` continues from the run
directory's latest checkpoint, bit for bit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from . import config
from .errors import ConfigError, GlacierError, NumericalError


def _fail(command: str, message: str, code: int = 2) -> None:
    """Print ``command: error: message`` as one paragraph to stderr and exit with ``code``."""
    text = " ".join(str(message).split())
    print(textwrap.fill(f"{command}: error: {text}", width=100, break_long_words=False,
                        break_on_hyphens=False), file=sys.stderr)
    sys.exit(code)


# --------------------------------------------------------------------------------------------
# Command-line checking before Hydra runs.

_CONFIG_FLAGS = {"--config-path": "path", "-cp": "path", "--config-name": "name",
                 "-cn": "name"}


def _split(args: list[str]) -> tuple[list[str], dict[str, str], bool]:
    """(overrides, {"path"/"name": value}, whether other Hydra flags are present)."""
    overrides: list[str] = []
    flags: dict[str, str] = {}
    other = False
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, value = arg.partition("=")
        if key in _CONFIG_FLAGS:
            if not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            flags[_CONFIG_FLAGS[key]] = value
        elif arg.startswith("-"):
            other = True
        else:
            overrides.append(arg)
        i += 1
    return overrides, flags, other


def _absolute_config_path(args: list[str]) -> list[str]:
    """The command line with a relative ``--config-path`` made absolute from the current
    directory (Hydra would take it relative to this module's folder)."""
    out = list(args)
    for i, arg in enumerate(out):
        key, eq, value = arg.partition("=")
        if key not in ("--config-path", "-cp"):
            continue
        j, value = (i, value) if eq else (i + 1, out[i + 1] if i + 1 < len(out) else "")
        if value and "://" not in value and not os.path.isabs(value):
            absolute = os.path.abspath(value)
            out[j] = f"{key}={absolute}" if eq else absolute
    return out


def _with_job_name(args: list[str], name: str) -> list[str]:
    """Hydra names the job (and its log file) after ``hydra.job.name`` of the primary config;
    a config loaded with ``--config-name`` (e.g. a run's ``.hydra/config.yaml``) has none."""
    _, flags, _ = _split(args)
    if "name" in flags and not any(a.startswith("hydra.job.name=") for a in args):
        return [*args, f"hydra.job.name={name}"]
    return args


def _is_hydra_override(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def check_command_line(args: list[str], *, primary: str, command: str) -> str | None:
    """None when the command line composes into a valid config (or is left to Hydra), else a
    one-paragraph explanation of what is wrong and how to fix it."""
    overrides, flags, other = _split(args)
    if other:
        return None
    overrides = [o for o in overrides if not _is_hydra_override(o)]
    config_dir = flags.get("path")
    if config_dir is not None:
        if "://" in config_dir:
            return None
        if not os.path.isdir(config_dir):
            return (f"--config-path={config_dir}: no such directory. Give the folder that "
                    "holds the config, e.g. a run directory's .hydra folder.")
    return config.check_overrides(overrides, primary=primary, config_dir=config_dir,
                                  config_name=flags.get("name"), command=command)


def _console(argv: list[str] | None, primary: str, app) -> None:
    """Run console script ``glacier-<primary>``: check the command line (exit 2 with one
    paragraph when it is wrong), then hand it to the Hydra ``app``."""
    command = f"glacier-{primary}"
    args = _absolute_config_path(list(sys.argv[1:] if argv is None else argv))
    problem = check_command_line(args, primary=primary, command=command)
    if problem:
        _fail(command, problem, 2)
    sys.argv = [sys.argv[0], *_with_job_name(args, primary)]
    app()


# --------------------------------------------------------------------------------------------
# glacier-simulate


def simulate(argv: list[str] | None = None) -> None:
    """Console script ``glacier-simulate``: forward simulation of one glacier."""
    _console(argv, "simulate", _simulate_app)


@hydra.main(version_base=None, config_path="pkg://glacier.configs", config_name="simulate")
def _simulate_app(cfg: DictConfig) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    logging.getLogger("jax").setLevel(logging.WARNING)  # not "no TPU" on every run
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        code = run_simulate(cfg, out_dir)
    except GlacierError as e:
        _fail("glacier-simulate", str(e), e.exit_code)
    if code:
        sys.exit(code)


def run_simulate(cfg: DictConfig, out_dir: Path) -> int:
    """The work of ``glacier-simulate`` in ``out_dir``; returns the exit status.

    config -> domain, physics, solver settings -> forward run (with a progress bar) ->
    ``simulation.nc`` + ``provenance.json`` -> one summary line on stdout.
    """
    from tqdm import tqdm

    from .io import netcdf, provenance
    from .progress import run_in_intervals

    start = time.perf_counter()
    try:
        cfg = config.typed(cfg, "simulate")
    except OmegaConfBaseException as e:  # e.g. a hand-edited config file
        raise ConfigError(config.explain(e, [])) from e
    try:
        domain = config.build_glacier(cfg.glacier)
        physics = config.build_physics(cfg.physics, domain)
        settings = config.build_run(cfg.solver, domain)
    except ValueError as e:
        raise ConfigError(f"invalid configuration: {e}") from e
    record = provenance.collect(sys.argv, int(cfg.seed))

    bar = tqdm(total=settings.t_end, desc=domain.name, unit="a", disable=None, leave=False,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| t = {n:g}/{total:g} a{postfix} "
                          "[{elapsed}<{remaining}]")

    def on_interval(t: float, volume: float) -> None:
        bar.n = t
        bar.set_postfix_str(f"V = {volume / 1e9:.4g} km3")

    try:
        result = run_in_intervals(domain, physics=physics, times=settings.times,
                                  stepping=settings.stepping, dtype=settings.dtype,
                                  area_threshold=settings.area_threshold,
                                  on_interval=on_interval)
    finally:
        bar.close()

    path = out_dir / "simulation.nc"
    netcdf.write_simulation(path, result, config_yaml=config.resolved_config(cfg, physics,
                                                                             settings),
                            provenance=record)
    wall = time.perf_counter() - start
    steps = int(result.steps.sum())
    record.update(outputs=["simulation.nc"], steps=steps, solve_wall_time_s=result.wall_time,
                  wall_time_s=wall, simulated_years=float(result.times[-1]),
                  mass_budget_error=result.budget_error,
                  status="completed" if result.failure is None else f"failed: {result.failure}")
    provenance.write_json(out_dir / "provenance.json", record)
    print(f"glacier-simulate: {domain.name}: {steps} steps, V = {result.volume[-1] / 1e9:.6g} "
          f"km3, mass-budget error {result.budget_error:.1e}, wall {wall:.3g} s -> {path}",
          flush=True)
    if result.failure is not None:
        hint = ("Raise solver.max_steps (the step budget of one save interval) or save more "
                "often with a smaller solver.save_every." if "step budget" in result.failure
                else "Lower solver.cfl or solver.max_dt, or check the physics values.")
        print(textwrap.fill(
            f"glacier-simulate: error: the solution failed: {result.failure} (written to "
            f"{path}). {hint}", width=100, break_long_words=False, break_on_hyphens=False),
            file=sys.stderr)
        return 3
    return 0


# --------------------------------------------------------------------------------------------
# glacier-train

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""Exit status of a run stopped by a signal (128 + the signal's number)."""


def train(argv: list[str] | None = None) -> None:
    """Console script ``glacier-train``: training of a learned law (UDE) on many glaciers."""
    _console(argv, "train", _train_app)


@hydra.main(version_base=None, config_path="pkg://glacier.configs", config_name="train")
def _train_app(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        cfg = config.typed_checked(cfg, "train")
        import jax

        if config._plain(cfg.solver)["dtype"] == "float64":
            jax.config.update("jax_enable_x64", True)
        for name in ("jax", "matplotlib"):  # not "no TPU" or "new font cache" on a run
            logging.getLogger(name).setLevel(logging.WARNING)
        code = run_train(cfg, out_dir)
    except GlacierError as e:
        _fail("glacier-train", str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("glacier-train", f"interrupted at once (before training started, or by a second "
                               f"Ctrl-C); no outputs were written. Checkpoints so far, if any, "
                               f"are in {out_dir / 'checkpoints'}: continue with "
                               "train.resume=true.", 130)
    if code:
        sys.exit(code)


class _StopFlag:
    """Set by SIGINT / SIGTERM (or ``train.stop_after``); checked between epochs.

    A second signal while the first is being handled interrupts at once (KeyboardInterrupt).
    """

    def __init__(self):
        self.reason: str | None = None
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.reason is not None

    def _handle(self, signum, frame):
        if self.signal is not None:
            self.restore()
            raise KeyboardInterrupt
        self.signal = signum
        self.reason = signal.Signals(signum).name

    def install(self) -> None:
        for sig in EXIT_SIGNAL:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _flat(tree, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): tree}


def _check_resumable(meta: dict[str, Any], cfg: DictConfig, path: Path) -> None:
    """ConfigError unless the checkpoint's run had the same training config as ``cfg``."""
    old = _flat(meta.get("fingerprint", {}))
    new = _flat(config.training_fingerprint(cfg))
    differ = sorted(k for k in set(old) | set(new) if old.get(k, "?") != new.get(k, "?"))
    if differ:
        shown = ", ".join(f"{k} ({old.get(k, 'unset')} there, {new.get(k, 'unset')} now)"
                          for k in differ[:4])
        raise ConfigError(f"train.resume=true: the checkpoint {path} was made with another "
                          f"config: {shown}{' ...' if len(differ) > 4 else ''}. Resume with "
                          "the overrides of that run (its .hydra/overrides.yaml), or start a "
                          "new run in another hydra.run.dir.")


def _make_trainer(problem, cfg: DictConfig):
    """The ``train.Trainer`` of ``cfg`` (optimizer, epochs, regularisation)."""
    from . import train as tr

    opt = config._plain(cfg.optimizer)
    epochs = int(cfg.train.epochs)
    trainer = tr.Trainer(problem, lr=opt["lr"], schedule=opt["schedule"], epochs=epochs,
                         lbfgs_steps=opt["lbfgs_steps"],
                         reg=tr.LossWeights(l2=cfg.loss.l2, velocity=cfg.loss.velocity),
                         clip_norm=opt["clip_norm"], decay=opt["decay"])
    return trainer


def _law_outputs(law, truth, glacier_T, H_max: float) -> dict[str, Any]:
    """What law.nc and law.png show: the learned (and true) A on a grid of the law's inputs,
    and the relative errors over the training glaciers' range."""
    from . import experiments, laws

    T_g = np.asarray(glacier_T, np.float64)
    finite = T_g[np.isfinite(T_g)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-30.0, 5.0)
    if isinstance(law, laws.NeuralDiffusivity):
        H = np.linspace(0.0, max(500.0, float(np.ceil(H_max / 50.0) * 50.0)), 101)
        slope = np.linspace(0.0, 0.6, 61)
        HH, SS = np.meshgrid(H, slope, indexing="ij")
        T_mean = float(finite.mean()) if finite.size else -12.5
        A = np.asarray(law.rate_factor_on(HH, SS, T_mean))
        A_true = float(truth.rate_factor(T_mean)) if truth is not None else None
        errors = None
        if truth is not None and finite.size:
            rel = [np.abs(np.asarray(law.rate_factor_on(HH, SS, t))
                          - float(truth.rate_factor(t))) / float(truth.rate_factor(t))
                   for t in np.unique(finite)]
            errors = dict(max_rel_error=float(np.max(rel)), mean_rel_error=float(np.mean(rel)))
        return dict(kind="inputs", H=H, slope=slope, A_learned=A, temperature=T_mean,
                    A_true=A_true, errors=errors, glacier_temperature=T_g)
    T = np.linspace(-30.0, 5.0, 141)
    A = np.asarray(law.rate_factor(T))
    A_true = np.asarray(truth.rate_factor(T)) if truth is not None else None
    errors = None
    if truth is not None and finite.size:
        errors = experiments.law_errors(law, truth, np.linspace(lo, hi, 201))
        at = experiments.law_errors(law, truth, finite)
        errors.update(max_rel_error_at_glaciers=at["max_rel_error"],
                      mean_rel_error_at_glaciers=at["mean_rel_error"])
    return dict(kind="temperature", temperature=T, A_learned=A, A_true=A_true, errors=errors,
                glacier_temperature=T_g, sampled_range=(lo, hi))


def _forward(law, batch, problem, n: int):
    """The trained model on the training glaciers: thickness and surface speed (first n)."""
    import dataclasses

    import jax

    from . import solver as slv
    from . import train as tr

    free = dataclasses.replace(problem, stepping=dataclasses.replace(
        problem.stepping, max_steps=10_000_000))
    traj = jax.jit(tr.simulate_batch, static_argnames=("problem", "adjoint"))(law, batch, free)
    physics = problem.physics_dict

    @jax.jit
    def speeds(law, H, bed, T):
        def one(h, b, t):
            return slv.surface_speed(h, b, law.rheology(t, physics), problem.grid)
        return jax.vmap(one)(H, bed, T)

    H = traj.thickness
    v = speeds(law, H, batch.bed, batch.temperature)
    return (np.asarray(H)[:n], np.asarray(v)[:n], np.asarray(traj.status)[:n])


def run_train(cfg: DictConfig, out_dir: Path) -> int:
    """The work of ``glacier-train`` in ``out_dir``; returns the exit status.

    config -> twin experiment (glaciers, observations, true law) -> law -> step budget ->
    Trainer (Adam + schedule, then L-BFGS) with a progress bar, checkpoints every
    ``train.checkpoint_every`` epochs and on SIGINT / SIGTERM -> ``training.nc``, ``law.nc``,
    ``simulation.nc``, ``loss.png``, ``law.png``, ``provenance.json`` -> one summary line.
    """
    import dataclasses

    import jax
    from tqdm import tqdm

    from . import experiments, plots
    from . import solver as slv
    from . import train as tr
    from .io import checkpoints as ckio
    from .io import provenance
    from .io import training as trio

    start = time.perf_counter()
    dtype = config._plain(cfg.solver)["dtype"]
    available = jax.devices()
    n_dev = int(cfg.train.devices) or len(available)
    if n_dev > len(available):
        raise ConfigError(f"train.devices={n_dev}, but only {len(available)} "
                          f"{available[0].platform} device(s) are available. Use "
                          "train.devices=0 for all of them, or train.devices=1.")
    ckpt_dir = out_dir / "checkpoints"
    found = ckio.latest(ckpt_dir)
    resume = bool(cfg.train.resume)
    if resume and found is None:
        raise ConfigError(f"train.resume=true, but {ckpt_dir} holds no checkpoint. Point "
                          "hydra.run.dir at the run to continue (hydra.run.dir=DIR), with that "
                          "run's overrides.")
    if not resume and found is not None:
        raise ConfigError(f"{ckpt_dir} already holds checkpoints of an earlier run. Add "
                          "train.resume=true to continue it, or choose a new hydra.run.dir.")
    meta0: dict[str, Any] = {}
    if resume:
        meta0 = json.loads((found / "meta.json").read_text())
        _check_resumable(meta0, cfg, found)

    record = provenance.collect(sys.argv, int(cfg.seed))
    config_yaml = config.resolved_train_config(cfg)
    ex_name, law_name = cfg.experiment.name, cfg.law.name
    setup = experiments.twin_A_of_T(**config.twin_options(cfg), devices=n_dev)
    names = setup.problem.names
    n = len(names)
    law0 = config.build_law(cfg, dtype=dtype)
    if resume:
        problem = dataclasses.replace(setup.problem,
                                      stepping=slv.Stepping(**meta0["stepping"]))
    else:
        problem = tr.size_step_budget(law0, setup.batch, setup.problem)
    trainer = _make_trainer(problem, cfg)
    state = trainer.init(law0)
    history = None
    if resume:
        checkpoint = ckio.load(found, state)
        state, history = checkpoint.state, checkpoint.history
    batch = setup.batch
    if cfg.loss.normalise == "sensitivity":
        lo, hi = config.law_bounds(cfg.law)
        batch = dataclasses.replace(batch, weight=tr.sensitivity_weights(
            batch, setup.problem, math.sqrt(lo * hi)))
    if n_dev > 1:
        mesh = tr.device_mesh(n_dev)
        batch = tr.shard(batch, mesh)
        state = tr.replicate(state, mesh)
    first_epoch = int(state.epoch)
    total = trainer.total_epochs
    every = int(cfg.train.checkpoint_every)
    stop_after = cfg.train.stop_after
    keep = int(cfg.train.keep_checkpoints)
    saved = {"epoch": first_epoch if resume else -1}

    def save(state, history):
        stepping = dataclasses.asdict(trainer.problem.stepping)
        ckio.save(ckpt_dir, state, history, keep=keep, meta=dict(
            stepping=stepping, total_epochs=total, devices=n_dev, glaciers=list(names),
            fingerprint=config.training_fingerprint(cfg), config=config_yaml,
            source_commit=record.get("source_commit")))
        saved["epoch"] = int(state.epoch)

    stop = _StopFlag()
    bar = tqdm(total=total, initial=first_epoch, desc="glacier-train", unit="epoch",
               disable=None, leave=False,
               bar_format="{desc}: epoch {n}/{total} |{bar}| {postfix} [{elapsed}<{remaining}]")

    def on_epoch(state, history):
        epoch = int(state.epoch)
        bar.update(1)
        bar.set_postfix_str(f"loss {history.loss[-1]:.4g} ({history.phase[-1]})")
        if epoch % every == 0 or epoch == total:
            save(state, history)
        if stop_after is not None and epoch >= stop_after and epoch < total:
            stop.reason = f"train.stop_after={stop_after}"

    failure = None
    stop.install()
    try:
        if stop_after is not None and first_epoch >= stop_after and first_epoch < total:
            stop.reason = f"train.stop_after={stop_after}"
        state, history = trainer.run(state, batch, history=history, on_epoch=on_epoch,
                                     should_stop=stop)
    except NumericalError as e:
        state, history, failure = e.state, e.history, str(e)
    finally:
        stop.restore()
        bar.close()
    epoch = int(state.epoch)
    if saved["epoch"] != epoch and epoch > 0:
        save(state, history)

    # Outputs of the parameters reached.
    law = state.law
    truth = setup.truth
    T_g = np.asarray(batch.temperature)[:n]
    H, speed, status = _forward(law, batch, trainer.problem, n)
    curves = _law_outputs(law, truth, T_g, float(np.nanmax(setup.H_true)))
    errors = curves["errors"] or {}
    obs = np.asarray(batch.obs)[:n]
    obs_full = np.concatenate([np.full_like(obs[:, :1], np.nan), obs], axis=1)
    scale = np.asarray(batch.scale)[:n, None, None, None]
    seen = np.isfinite(obs_full[:, 1:]).reshape(n, -1)
    misfit = ((H[:, 1:] - np.nan_to_num(obs_full[:, 1:])) / scale).reshape(n, -1)
    model_loss = (np.where(seen, misfit**2, 0.0).sum(axis=1)
                  / np.maximum(seen.sum(axis=1), 1))  # as losses.weighted_mse
    if stop.signal is not None:
        status_text = f"stopped by {stop.reason} at epoch {epoch} of {total}"
    elif stop.reason is not None:
        status_text = f"stopped after epoch {epoch} of {total} ({stop.reason})"
    elif failure is not None:
        status_text = f"failed: {failure}"
    else:
        status_text = "completed"
    final_loss = history.loss[-1] if history.loss else float("nan")
    wall = time.perf_counter() - start
    train_wall = history.wall_time[-1] if history.wall_time else 0.0
    summary = dict(status=status_text, experiment=ex_name, law=law_name,
                   epochs_completed=epoch, epochs_total=total, final_loss=final_loss,
                   final_model_loss=float(np.mean(model_loss)), devices=n_dev,
                   step_budget=int(trainer.problem.stepping.max_steps),
                   training_wall_time_s=train_wall, **errors)
    if curves["kind"] == "temperature":
        summary.update(sampled_T_min=curves["sampled_range"][0],
                       sampled_T_max=curves["sampled_range"][1])
    record.update(summary, wall_time_s=wall, resumed_from_epoch=first_epoch if resume else None,
                  outputs=["training.nc", "law.nc", "simulation.nc", "checkpoints/",
                           "loss.png", "law.png"])

    common = dict(config_yaml=config_yaml, provenance=record)
    trio.write_training(out_dir / "training.nc", history, names, attrs=summary,
                        weights=np.asarray(batch.weight), **common)
    if curves["kind"] == "temperature":
        ds = trio.law_of_temperature_dataset(
            curves["temperature"], curves["A_learned"], A_true=curves["A_true"], names=names,
            glacier_temperature=T_g, attrs=dict(summary, law=law_name), **common)
        plots.law_of_temperature_figure(out_dir / "law.png", curves["temperature"],
                                        curves["A_learned"], A_true=curves["A_true"],
                                        glacier_temperature=T_g, names=names,
                                        errors=curves["errors"])
    else:
        ds = trio.law_of_inputs_dataset(
            curves["H"], curves["slope"], curves["A_learned"], temperature=curves["temperature"],
            A_true=curves["A_true"], names=names, glacier_temperature=T_g,
            attrs=dict(summary, law=law_name), **common)
        plots.law_of_inputs_figure(out_dir / "law.png", curves["H"], curves["slope"],
                                   curves["A_learned"], temperature=curves["temperature"],
                                   A_true=curves["A_true"])
    trio.write_law(out_dir / "law.nc", ds)
    grid = trainer.problem.grid
    sim = trio.batch_simulation_dataset(
        names=names, x=grid.x, y=grid.y, times=trainer.problem.times, thickness=H,
        bed=np.asarray(batch.bed)[:n], velocity=speed, thickness_obs=obs_full,
        thickness_true=np.asarray(setup.H_true)[:n], ice_free=np.asarray(batch.ice_free)[:n],
        temperature=T_g, cell_area=grid.cell_area,
        area_threshold=float(config._plain(cfg.solver)["area_threshold"]),
        attrs=dict(status="completed" if np.all(status == slv.STATUS_OK) else
                   "failed: the forward run of the trained law did not complete",
                   training_status=status_text, law=law_name, experiment=ex_name,
                   **{f"loss_{g}": float(v) for g, v in zip(names, model_loss, strict=True)}),
        **common)
    trio.write_batch_simulation(out_dir / "simulation.nc", sim)
    glacier_loss = np.asarray([np.asarray(r, np.float64)[:n] for r in history.loss_glacier])
    plots.loss_figure(out_dir / "loss.png", history.loss,
                      glacier_loss if glacier_loss.size else None, names, history.phase)
    provenance.write_json(out_dir / "provenance.json", record)

    done = epoch - first_epoch
    steps = np.diff(history.wall_time[first_epoch:]) if done > 1 else np.array([])
    per_epoch = f", {np.median(steps):.3g} s/epoch" if steps.size else ""
    err_text = (f", A error max {errors['max_rel_error']:.2%} mean "
                f"{errors['mean_rel_error']:.2%}" if errors else "")
    print(f"glacier-train: {ex_name}, law={law_name}: {epoch}/{total} epochs"
          f"{f' ({done} this session)' if resume else ''}, loss {final_loss:.4g}{err_text}, "
          f"wall {wall:.3g} s{per_epoch} -> {out_dir}", flush=True)
    if failure is not None:
        print(textwrap.fill(
            f"glacier-train: error: {failure} Outputs of the last good epoch are in "
            f"{out_dir}. Lower optimizer.lr, set optimizer.clip_norm, or lower solver.cfl.",
            width=100, break_long_words=False, break_on_hyphens=False), file=sys.stderr)
        return 3
    if stop.reason is not None:
        print(textwrap.fill(
            f"glacier-train: {status_text}; checkpoint in {ckpt_dir}. Continue with "
            f"glacier-train <the same overrides> train.resume=true hydra.run.dir={out_dir}",
            width=100, break_long_words=False, break_on_hyphens=False), file=sys.stderr)
        return EXIT_SIGNAL.get(stop.signal, 0)
    return 0


# --------------------------------------------------------------------------------------------
# glacier-invert


def invert(argv: list[str] | None = None) -> None:
    """Console script ``glacier-invert``: inversion against observed ice thickness."""
    _console(argv, "invert", _invert_app)


@hydra.main(version_base=None, config_path="pkg://glacier.configs", config_name="invert")
def _invert_app(cfg: DictConfig) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    for name in ("jax", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        code = run_invert(cfg, out_dir)
    except GlacierError as e:
        _fail("glacier-invert", str(e), e.exit_code)
    if code:
        sys.exit(code)


def run_invert(cfg: DictConfig, out_dir: Path) -> int:
    """The work of ``glacier-invert`` in ``out_dir``; returns the exit status.

    config -> domain (mask, surface, observations) -> ``invert.InversionData`` -> K-fold
    spatial cross-validation of the adjoint inversion and of the baseline (when
    ``invert.cv_folds`` >= 2) -> final inversion on all observations -> ``inversion.nc``,
    ``inversion.png``, ``provenance.json`` -> one summary line.
    """
    from omegaconf import OmegaConf
    from tqdm import tqdm

    from . import invert as iv
    from . import plots
    from .io import inversion as inio
    from .io import provenance

    start = time.perf_counter()
    cfg = config.typed_checked(cfg, "invert")
    options = config.invert_options(cfg)
    k = int(cfg.invert.cv_folds)
    try:
        domain = config.build_glacier(cfg.glacier)
        physics = config.build_physics(cfg.physics, domain)
    except ValueError as e:
        raise ConfigError(f"invalid configuration: {e}") from e
    data = iv.InversionData.from_domain(domain, physics)
    law0 = config.build_law(cfg) if options.A == "law" else None
    record = provenance.collect(sys.argv, int(cfg.seed))
    resolved = OmegaConf.create(config._plain(cfg))
    resolved.physics = {key: float(v) for key, v in physics.items()}
    if "A_min" in resolved.law:
        resolved.law.A_min, resolved.law.A_max = config.law_bounds(resolved.law)
    config_yaml = OmegaConf.to_yaml(resolved)

    runs = (k + 1) if k else 1
    bar = tqdm(total=runs * (options.iterations + options.warmup),
               desc=f"glacier-invert {domain.name}",
               unit="it", disable=None, leave=False,
               bar_format="{desc}: {n}/{total} |{bar}| {postfix} [{elapsed}<{remaining}]")
    stage = {"name": "fold 1" if k else "final"}

    def on_iteration(it: int, terms: dict[str, float]) -> None:
        bar.update(1)
        shown = " ".join(f"{key} {v:.3g}" for key, v in terms.items() if key != "total")
        bar.set_postfix_str(f"{stage['name']}: cost {terms['total']:.4g} ({shown})")

    def on_fold(f: int, scores: dict[str, float]) -> None:
        stage["name"] = f"fold {f + 2}" if f + 1 < k else "final"
        bar.write(f"glacier-invert: fold {f + 1}/{k}: held-out RMSE {scores['rmse']:.1f} m "
                  f"(baseline {scores['baseline_rmse']:.1f} m)")

    try:
        if k:
            cv = iv.cross_validate(data, options, k, block=float(cfg.invert.cv_block),
                                   seed=int(cfg.seed), on_fold=on_fold,
                                   callback=on_iteration, law=law0)
            final, std = cv.final, cv.thickness_std
            H_base, tau = cv.baseline_thickness, cv.baseline_tau
            scores = dict(cv_folds=k, cv_rmse=cv.rmse, cv_bias=cv.bias,
                          cv_within_spread=cv.within_spread,
                          cv_error_floor=cv.error_floor,
                          baseline_cv_rmse=cv.baseline_rmse,
                          baseline_cv_bias=cv.baseline_bias)
            cv_fold, cv_pred = cv.folds, cv.held_out
            failures = cv.failures
        else:
            H_base, tau = iv.baseline(data, data.obs_count)
            final = iv.invert(data, options, H_init=H_base, law=law0, callback=on_iteration)
            std, cv_fold, cv_pred = None, None, None
            failures = [f"final: {final.failure}"] if final.failure else []
            nan = float("nan")
            scores = dict(cv_folds=0, cv_rmse=nan, cv_bias=nan, cv_within_spread=nan,
                          cv_error_floor=nan,
                          baseline_cv_rmse=nan, baseline_cv_bias=nan)
    finally:
        bar.close()

    obs = data.thickness_obs
    mean_obs = float(np.nanmean(obs))
    seen = np.isfinite(obs)
    fit_rmse = float(np.sqrt(np.mean((final.thickness - obs)[seen] ** 2)))
    A_value = np.asarray(final.A)
    status = "completed" if not failures else "failed: " + "; ".join(failures)
    summary = dict(status=status, glacier=domain.name, baseline_tau=tau,
                   mean_obs_thickness=mean_obs, fit_rmse=fit_rmse,
                   iterations=final.iterations, final_cost=final.history["total"][-1],
                   A_mean=float(np.exp(np.mean(np.log(A_value)))),
                   volume=float(np.sum(final.thickness) * data.grid.cell_area), **scores)
    for term, values in final.history.items():
        summary[f"final_cost_{term}"] = values[-1]
    wall = time.perf_counter() - start
    record.update(summary, wall_time_s=wall, outputs=["inversion.nc", "inversion.png"])
    ds = inio.inversion_dataset(
        x=data.grid.x, y=data.grid.y, thickness=final.thickness, bed=final.bed, A=final.A,
        surface=data.surface, mask=data.mask, thickness_obs=obs, obs_count=data.obs_count,
        baseline_thickness=H_base, history=final.history, thickness_std=std, cv_fold=cv_fold,
        cv_prediction=cv_pred, attrs=summary, config_yaml=config_yaml, provenance=record,
        crs=domain.attrs.get("crs"))
    path = inio.write_inversion(out_dir / "inversion.nc", ds)
    residual = np.where(seen, final.thickness - obs, np.nan)
    title = (f"{domain.name}: held-out RMSE {scores['cv_rmse']:.1f} m, bias "
             f"{scores['cv_bias']:.1f} m (baseline {scores['baseline_cv_rmse']:.1f} m), "
             f"mean observed {mean_obs:.0f} m" if k else
             f"{domain.name}: fit RMSE {fit_rmse:.1f} m, mean observed {mean_obs:.0f} m")
    plots.inversion_figure(out_dir / "inversion.png", data.grid.x, data.grid.y,
                           final.thickness, np.zeros_like(final.thickness) if std is None
                           else std, residual, data.mask, title=title)
    provenance.write_json(out_dir / "provenance.json", record)
    cv_text = (f"held-out RMSE {scores['cv_rmse']:.1f} m ({scores['cv_rmse'] / mean_obs:.0%} "
               f"of the mean observed {mean_obs:.0f} m), bias {scores['cv_bias']:+.1f} m, "
               f"{scores['cv_within_spread']:.0%} within 2 std (95 % with an error floor of "
               f"{scores['cv_error_floor']:.0f} m); baseline "
               f"{scores['baseline_cv_rmse']:.1f} m, bias {scores['baseline_cv_bias']:+.1f} m"
               if k else f"fit RMSE {fit_rmse:.1f} m (no cross-validation)")
    print(f"glacier-invert: {domain.name}: {cv_text}; A {summary['A_mean']:.3g} "
          f"Pa-3 a-1, volume {summary['volume'] / 1e9:.4g} km3, wall {wall:.3g} s -> {path}",
          flush=True)
    if failures:
        print(textwrap.fill(
            f"glacier-invert: error: {'; '.join(failures)} The outputs ({path}) hold the last "
            "good state of each inversion; the scores use them.", width=100,
            break_long_words=False, break_on_hyphens=False), file=sys.stderr)
        return 3
    return 0


COMMANDS = {"simulate": simulate, "train": train, "invert": invert}
"""``python -m glacier COMMAND`` -> console script."""


def main(argv: list[str] | None = None) -> None:
    """``python -m glacier {simulate,train,invert} [overrides]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print("usage: python -m glacier {simulate,train,invert} [overrides...]\n"
              "The console scripts glacier-simulate, glacier-train and glacier-invert are the "
              "documented way.", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"glacier-{args[0]}", *args[1:]]
    COMMANDS[args[0]](args[1:])
