"""``glacier-train``'s work: UDE training of a learned law on a twin or a set of glacier files.

twin experiment (glaciers, observations, true law) -> law -> step budget -> ``train.Trainer``
(Adam + schedule, then L-BFGS) with a progress bar, checkpoints every ``checkpoint_every``
epochs and on SIGINT / SIGTERM (or ``stop_after``), bit-for-bit resume -> ``training.nc``,
``law.nc``, ``simulation.nc``, ``loss.png``, ``law.png``, ``provenance.json`` -> one line.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import diffusivity_twin as dtwin
from .. import distributed as dist
from .. import experiments, glacier_set, laws, losses, minibatch, plots
from .. import solver as slv
from .. import train as tr
from ..compile import CompileClock
from ..errors import ConfigError, InputDataError, NumericalError
from ..grid import edge_cells
from ..io import checkpoints as ckio
from ..io import provenance
from ..io import training as trio
from ..schemes import ExplicitMUSCL, Scheme, scheme_from_dict, scheme_to_dict
from ..simulation import SPEED_CEILING
from .common import bar, output_location, paragraph, warn

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGUSR2: 128 + signal.SIGUSR2}
"""Exit status of a run stopped by a signal (128 + the signal's number). SIGUSR2 is the
warning SLURM sends ``hydra.launcher.signal_delay_s`` before a job's time limit under
``hydra/launcher=slurm`` (submitit's default signal): the training stops as on SIGTERM."""





@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """Adam with a schedule, then L-BFGS (``train.Trainer``'s arguments)."""

    lr: float = 0.003
    schedule: str = "cosine"
    decay: float = 0.1
    lbfgs_steps: int = 50
    clip_norm: float | None = None


@dataclasses.dataclass(frozen=True)
class TrainLoop:
    """Epochs, checkpoints, resuming and devices of a training run."""

    epochs: int = 20
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    resume: bool = False
    devices: int = 1
    stop_after: int | None = None
    on_nonfinite: str = "stop"
    distributed: dist.DistributedSettings = dist.DistributedSettings()
    batch_size: int | None = None
    batch_update: str = "step"


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """Everything a training run needs.

    Attributes:
        experiment: the experiment's options (a twin's, or ``glacier_set.FilesOptions``);
            law: the initial law (its parameters are what is trained); law_name: its
            ``law=`` name.
        optimizer, loop: see ``OptimizerSettings``, ``TrainLoop``.
        reg: weights of the terms added to the misfit; normalise: "sensitivity" (weights that
            balance how strongly each glacier constrains A, around ``A_prior``) or "thickness".
        scheme: the scheme training runs with (``solver.scheme``; the observations of the
            twin always come from the explicit reference); dtype: precision;
            area_threshold: of ``simulation.nc``.
        seed, config_yaml, argv: recorded; fingerprint: what a resumed run must share with
            the checkpoint's run (the config without ``train``).
    """

    experiment: experiments.TwinAofTOptions
    law: Any
    law_name: str
    optimizer: OptimizerSettings = OptimizerSettings()
    loop: TrainLoop = TrainLoop()
    reg: tr.LossWeights = tr.LossWeights()
    normalise: str = "sensitivity"
    A_prior: float = 1.1e-17
    fit_A_ref: bool = False
    scheme: Scheme = ExplicitMUSCL()
    dtype: str = "float64"
    area_threshold: float = 1.0
    seed: int = 0
    config_yaml: str = ""
    fingerprint: dict = dataclasses.field(default_factory=dict)
    argv: tuple[str, ...] = ()


class _StopFlag:
    """Set by SIGINT / SIGTERM / SIGUSR2 (or ``train.stop_after``); checked between epochs.

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


def _check_resumable(meta: dict[str, Any], fingerprint: dict, path: Path) -> None:
    """ConfigError unless the checkpoint's run had the same training config."""
    old = _flat(meta.get("fingerprint", {}))
    new = _flat(fingerprint)
    differ = sorted(k for k in set(old) | set(new) if old.get(k, "?") != new.get(k, "?"))
    if differ:
        shown = ", ".join(f"{k} ({old.get(k, 'unset')} there, {new.get(k, 'unset')} now)"
                          for k in differ[:4])
        raise ConfigError(f"train.resume=true: the checkpoint {path} was made with another "
                          f"config: {shown}{' ...' if len(differ) > 4 else ''}. Resume with "
                          "the overrides of that run (its .hydra/overrides.yaml), or start a "
                          "new run in another hydra.run.dir.")


def _make_trainer(problem, job: TrainJob, groups=None, size: int = 0,
                  place=None) -> tr.Trainer:
    """The ``train.Trainer`` of ``job`` (optimizer, epochs, regularisation); over the
    ``groups`` of ``minibatch.plan`` when ``train.batch_size`` is set."""
    o = job.optimizer
    kwargs = dict(lr=o.lr, schedule=o.schedule, epochs=int(job.loop.epochs),
                  lbfgs_steps=o.lbfgs_steps, reg=job.reg, clip_norm=o.clip_norm,
                  decay=o.decay, on_nonfinite=job.loop.on_nonfinite)
    if groups is None:
        return tr.Trainer(problem, **kwargs)
    return minibatch.MiniBatchTrainer(problem, n_groups=len(groups), size=size,
                                      update=job.loop.batch_update, seed=int(job.seed),
                                      place=place, **kwargs)


def _scheme_of(meta: dict[str, Any]) -> Scheme:
    """The scheme a checkpoint was made with (also of checkpoints that stored a "stepping")."""
    return scheme_from_dict(meta.get("scheme") or meta["stepping"])


def _law_outputs(law, truth, glacier_T, H_max: float) -> dict[str, Any]:
    """What law.nc and law.png show: the learned (and true) A on a grid of the law's inputs,
    and the relative errors over the training glaciers' range."""
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


def _A_ref(law) -> float | None:
    return float(law.A_ref) if isinstance(law, laws.NeuralScaledDiffusivity) else None


def _start_law(job: TrainJob, batch, problem, meta: dict[str, Any] | None):
    """The law training starts from, and the best constant-A Glen law when one was fitted.

    ``law=nn_D`` with ``law.A_ref=null``: A_ref is the constant A of least loss on the
    training glaciers (``diffusivity_twin.fit_constant_A``), so a fresh network is the best
    Glen law and learns what that law misses; a resumed run takes the checkpoint's A_ref.
    """
    law = job.law
    if not (job.fit_A_ref and isinstance(law, laws.NeuralScaledDiffusivity)):
        return law, None
    if meta is not None and meta.get("A_ref"):
        A_ref = float(meta["A_ref"])
    else:
        constant, _ = dtwin.fit_constant_A(batch, problem, A_prior=job.A_prior)
        A_ref = float(jnp.exp(constant.log_A))
    constant = laws.ConstantA(log_A=jnp.log(jnp.asarray(A_ref, batch.H0.dtype)))
    return dataclasses.replace(law, A_ref=A_ref), constant


def _twin_text(errors: dict[str, Any]) -> str:
    """The diffusivity twin's figures of merit for the summary line."""
    text = (f", D error median {errors['D_median_rel_error']:.1%} (constant A "
            f"{errors['D_median_rel_error_constant_A']:.1%})")
    if "test_thickness_rmse" in errors:
        a, b = errors["test_thickness_rmse"], errors["test_thickness_rmse_constant_A"]
        ratio = f", {b / a:.3g}x closer" if a > 0 else ""
        text += (f", held-out thickness RMSE {a:.3g} m (constant A {b:.3g} m{ratio})")
    return text


def _forward(law, batch, problem, n: int, chunk: int | None = None):
    """The trained model on the training glaciers: thickness and surface speed (first n),
    ``chunk`` glaciers at a time (``train.in_chunks``)."""

    free = problem.with_budget(tr.UNBOUNDED)
    run = jax.jit(tr.simulate_batch, static_argnames=("problem", "adjoint", "speed"))
    traj, v = tr.in_chunks(lambda b: run(law, b, free, speed=True), batch, chunk)
    return traj.thickness[:n], v[:n], traj.status[:n]


def run(job: TrainJob, out_dir: Path) -> int:
    """See ``_run``; JAX's compile time during the run is measured (``CompileClock``)."""
    with CompileClock() as clock:
        return _run(job, out_dir, clock)


def _run(job: TrainJob, out_dir: Path, clock: CompileClock) -> int:
    """The work of ``glacier-train`` in ``out_dir``; returns the exit status (0; 3 on a
    numerical failure, with the outputs of the last good epoch; 130 / 143 when stopped by
    SIGINT / SIGTERM, with a checkpoint to resume from)."""

    start = time.perf_counter()
    out_dir = output_location(out_dir, "training.nc", "law.nc", "simulation.nc", "loss.png",
                              "law.png", "provenance.json")
    loop = job.loop
    available = jax.devices()  # of all processes when train.distributed is on
    n_dev = int(loop.devices) or len(available)
    if jax.process_count() > 1:
        if n_dev not in (1, len(available)):
            raise ConfigError(f"train.devices={n_dev}: a run of {jax.process_count()} "
                              f"processes splits the glaciers over all {len(available)} "
                              "devices of all processes; use train.devices=0.")
        n_dev = len(available)
    main = dist.is_main()  # process 0 writes checkpoints and outputs
    if n_dev > len(available):
        raise ConfigError(f"train.devices={n_dev}, but only {len(available)} "
                          f"{available[0].platform} device(s) are available. Use "
                          "train.devices=0 for all of them, or train.devices=1.")
    ckpt_dir = out_dir / "checkpoints"
    found, damaged = ckio.newest_intact(ckpt_dir)
    resume = bool(loop.resume)
    if resume and found is None and damaged:
        raise InputDataError(f"train.resume=true, but every checkpoint in {ckpt_dir} is "
                             "damaged: " + "; ".join(damaged) + ". Start a new run (a new "
                             "hydra.run.dir).")
    if resume and found is None:
        raise ConfigError(f"train.resume=true, but {ckpt_dir} holds no checkpoint. Point "
                          "hydra.run.dir at the run to continue (hydra.run.dir=DIR), with that "
                          "run's overrides.")
    if resume and damaged:
        warn("skipped damaged checkpoint(s): " + "; ".join(damaged) + f". Resuming from the "
             f"newest intact one, {found}.")
    if not resume and (found is not None or damaged):
        raise ConfigError(f"{ckpt_dir} already holds checkpoints of an earlier run. Add "
                          "train.resume=true to continue it, or choose a new hydra.run.dir.")
    meta0: dict[str, Any] = {}
    if resume:
        meta0 = json.loads((found / "meta.json").read_text())
        _check_resumable(meta0, job.fingerprint, found)

    record = provenance.collect(list(job.argv), int(job.seed))
    # With mini-batches, every forward-only pass (a twin's spin-up and observations, the step
    # budget, the sensitivity weights, the outputs) also runs this many glaciers at a time.
    chunk = None if loop.batch_size is None else max(int(loop.batch_size), n_dev)
    config_yaml = job.config_yaml
    law_name = job.law_name
    twin = None
    if isinstance(job.experiment, dtwin.TwinDiffusivityOptions):
        ex_name = "twin_diffusivity"
        twin = dtwin.twin_diffusivity(job.experiment, seed=int(job.seed), dtype=job.dtype,
                                      scheme=job.scheme, devices=n_dev)
        setup = twin.train
    elif isinstance(job.experiment, glacier_set.FilesOptions):
        ex_name = "files"
        setup = glacier_set.build(job.experiment, dtype=job.dtype, scheme=job.scheme,
                                  devices=n_dev, velocity=job.reg.velocity > 0)
    else:
        ex_name = "twin_A_of_T"
        setup = experiments.twin_A_of_T(job.experiment, seed=int(job.seed), dtype=job.dtype,
                                        scheme=job.scheme, devices=n_dev, chunk=chunk)
    names = setup.problem.names
    n = len(names)
    batch = setup.batch
    if job.normalise == "sensitivity":
        batch = dataclasses.replace(batch, weight=tr.sensitivity_weights(
            batch, setup.problem, job.A_prior, chunk=chunk))
    law0, constant = _start_law(job, batch, setup.problem, meta0 if resume else None)
    if resume:
        problem = dataclasses.replace(setup.problem, scheme=_scheme_of(meta0))
    else:
        problem = tr.size_step_budget(law0, setup.batch, setup.problem, chunk=chunk)
    mesh = tr.device_mesh(n_dev) if n_dev > 1 else None
    place = None if mesh is None else (lambda b: tr.shard(b, mesh))
    groups = None if loop.batch_size is None else minibatch.plan(
        batch, problem.grid, int(loop.batch_size), multiple_of=n_dev)
    trainer = _make_trainer(problem, job, groups, batch.size, place)
    state = trainer.init(law0)
    history = None
    if resume:
        checkpoint = ckio.load(found, state)
        state, history = checkpoint.state, checkpoint.history
    host_batch = batch
    if mesh is not None:
        state = tr.replicate(state, mesh)
    data = groups if groups is not None else batch if place is None else place(batch)
    first_epoch = int(state.epoch)
    total = trainer.total_epochs
    every = int(loop.checkpoint_every)
    stop_after = loop.stop_after
    keep = int(loop.keep_checkpoints)
    current = {"problem": problem}
    saved = {"epoch": first_epoch if resume else -1}

    def save(state, history):
        if not main:
            return
        scheme = scheme_to_dict(current["problem"].scheme)
        ckio.save(ckpt_dir, state, history, keep=keep, meta=dict(
            scheme=scheme, total_epochs=total, devices=n_dev, glaciers=list(names),
            fingerprint=job.fingerprint, config=config_yaml, A_ref=_A_ref(law0),
            source_commit=record.get("source_commit")))
        saved["epoch"] = int(state.epoch)

    stop = _StopFlag()
    progress = bar(total, "glacier-train", "{desc}: epoch {n}/{total} |{bar}| {postfix} "
                   "[{elapsed}<{remaining}]", initial=first_epoch, unit="epoch")

    def on_epoch(state, history, problem):
        epoch = int(state.epoch)
        current["problem"] = problem
        progress.update(1)
        progress.set_postfix_str(f"loss {history.loss[-1]:.4g} ({history.phase[-1]})")
        if epoch % every == 0 or epoch == total:
            save(state, history)
        if stop_after is not None and epoch >= stop_after and epoch < total:
            stop.reason = f"train.stop_after={stop_after}"

    failure = None
    stop.install()
    try:
        if stop_after is not None and first_epoch >= stop_after and first_epoch < total:
            stop.reason = f"train.stop_after={stop_after}"
        result = trainer.run(state, data, history=history, on_epoch=on_epoch,
                             should_stop=lambda: _agreed(stop))
    except NumericalError as e:
        result, failure = e.run, str(e)
    finally:
        stop.restore()
        progress.close()
    state, history = result.state, result.history
    current["problem"] = result.problem
    epoch = int(state.epoch)
    if saved["epoch"] != epoch and epoch > 0:
        save(state, history)

    # Outputs of the parameters reached, computed in every process on its own device.
    dist.barrier("training done")
    law = jax.tree_util.tree_map(jnp.asarray, dist.to_host(state.law))
    batch = host_batch
    truth = setup.truth
    T_g = np.asarray(batch.temperature)[:n]
    H, speed, status = _forward(law, batch, result.problem, n, chunk)
    if twin is not None:
        learned, _, errors = dtwin.evaluate(law, twin, batch, result.problem,
                                            A_prior=job.A_prior, constant=constant)
        curves = dict(kind="diffusivity", errors=errors, temperature=twin.temperature)
    elif isinstance(law, laws.NeuralScaledDiffusivity):  # on twin_A_of_T: D at the mean T
        T_mean = float(np.nanmean(T_g))
        learned = dtwin.law_map(law, truth, result.problem.physics, T_mean,
                                dtwin.training_states(setup, result.problem))
        curves, errors = dict(kind="diffusivity", errors=None, temperature=T_mean), {}
    else:
        curves = _law_outputs(law, truth, T_g, float(np.nanmax(setup.H_true)))
        errors = curves["errors"] or {}
    obs = np.asarray(batch.obs)[:n]
    obs_full = np.concatenate([np.full_like(obs[:, :1], np.nan), obs], axis=1)
    model_loss = np.asarray(jax.vmap(losses.weighted_mse)(
        jnp.asarray(H[:, 1:]), jnp.asarray(obs), None, jnp.asarray(batch.scale)[:n]))
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
    if _A_ref(law) is not None:
        errors = dict(errors, A_ref=_A_ref(law), A_ref_fitted=int(constant is not None))
    warnings = _training_warnings(history, names, H, speed, status)
    summary = dict(status=status_text, warnings="; ".join(warnings), experiment=ex_name,
                   law=law_name,
                   epochs_completed=epoch, epochs_total=total, final_loss=final_loss,
                   final_model_loss=float(np.mean(model_loss)), devices=n_dev,
                   processes=jax.process_count(), **_batch_attrs(groups, host_batch, loop),
                   step_budget=int(result.problem.scheme.max_steps),
                   training_wall_time_s=train_wall, compile_time_s=clock.seconds,
                   programs_compiled=clock.programs, **errors)
    if curves["kind"] == "temperature":
        summary.update(sampled_T_min=curves["sampled_range"][0],
                       sampled_T_max=curves["sampled_range"][1])
    record.update(summary, wall_time_s=wall, resumed_from_epoch=first_epoch if resume else None,
                  outputs=["training.nc", "law.nc", "simulation.nc", "checkpoints/",
                           "loss.png", "law.png"])

    if not main:
        print(f"glacier-train: process {jax.process_index()} of {jax.process_count()}: "
              f"{epoch}/{total} epochs, loss {final_loss:.6g}; "
              "process 0 writes the outputs", flush=True)
        return 3 if failure is not None else 0
    common = dict(config_yaml=config_yaml, provenance=record)
    trio.write_training(out_dir / "training.nc", history, names, attrs=summary,
                        weights=np.asarray(batch.weight), **common)
    if curves["kind"] == "diffusivity":
        ds = trio.law_of_diffusivity_dataset(
            learned["thickness"], learned["slope"], learned["D_learned"],
            learned["state_density"], D_true=learned["D_true"],
            temperature=curves["temperature"], names=names,
            attrs=dict(summary, law=law_name), **common)
        plots.diffusivity_figure(out_dir / "law.png", learned["thickness"], learned["slope"],
                                 learned["D_learned"], learned["D_true"],
                                 learned["state_density"], temperature=curves["temperature"],
                                 summary=_twin_text(errors).lstrip(", ") if twin else "")
    elif curves["kind"] == "temperature":
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
    grid = result.problem.grid
    sim = trio.batch_simulation_dataset(
        names=names, x=grid.x, y=grid.y, times=result.problem.times, thickness=H,
        bed=np.asarray(batch.bed)[:n], velocity=speed, thickness_obs=obs_full,
        thickness_true=None if truth is None else np.asarray(setup.H_true)[:n],
        ice_free=np.asarray(batch.ice_free)[:n],
        temperature=T_g, cell_area=grid.cell_area,
        area_threshold=float(job.area_threshold),
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
    err_text = (_twin_text(errors) if twin is not None else
                f", A error max {errors['max_rel_error']:.2%} mean "
                f"{errors['mean_rel_error']:.2%}" if errors else "")
    print(f"glacier-train: {ex_name}, law={law_name}: {epoch}/{total} epochs"
          f"{f' ({done} this session)' if resume else ''}, loss {final_loss:.4g}{err_text}, "
          f"wall {wall:.3g} s (compiling {clock.seconds:.3g} s){per_epoch} -> {out_dir}",
          flush=True)
    for text in warnings:
        warn(f"glacier-train: warning: {text}.")
    if failure is not None:
        print(paragraph(
            f"glacier-train: error: {failure} Outputs of the last good epoch are in "
            f"{out_dir}. Lower optimizer.lr, set optimizer.clip_norm, or lower solver.cfl."),
            file=sys.stderr)
        return 3
    if stop.reason is not None:
        print(paragraph(
            f"glacier-train: {status_text}; checkpoint in {ckpt_dir}. Continue with "
            f"glacier-train <the same overrides> train.resume=true hydra.run.dir={out_dir}"),
            file=sys.stderr)
        return EXIT_SIGNAL.get(stop.signal, 0)
    return 0


def _agreed(stop: _StopFlag) -> bool:
    """``stop()`` agreed by all processes: a signal to any task stops all after this epoch."""
    if jax.process_count() > 1 and dist.any_process(stop()) and stop.reason is None:
        stop.reason = "a stop signal to another process"
    return stop()


def _batch_attrs(groups, batch, loop) -> dict[str, Any]:
    """The summary's figures of the mini-batches (none for a full batch)."""
    if groups is None:
        return dict(batch_size="all")
    return dict(batch_size=int(loop.batch_size), batch_update=loop.batch_update,
                batch_groups=len(groups), batch_windows=len({(g.grid.ny, g.grid.nx)
                                                             for g in groups}),
                batch_padding=round(minibatch.padding_ratio(groups, batch), 3))


def _training_warnings(history, names, H, speed, status) -> list[str]:
    """What a user should know about a completed training (the ``warnings`` attribute of
    ``training.nc`` and ``law.nc``; empty: nothing): epochs whose loss was not finite (skipped
    or rolled back), glaciers whose final forward run failed, ice at a domain edge, and
    implausible speeds in the final model (``simulation.SPEED_CEILING``)."""
    out = []
    bad = int(np.sum(~np.isfinite(np.asarray(history.loss, np.float64))))
    if bad:
        out.append(f"{bad} epoch(s) had a non-finite loss and were skipped or rolled back "
                   "(train.on_nonfinite)")
    H, speed = np.asarray(H), np.asarray(speed)
    for g, name in enumerate(names):
        if np.any(np.asarray(status)[g] != slv.STATUS_OK):
            out.append(f"the final forward run of glacier {name!r} did not complete")
        if np.any(H[g][..., edge_cells(H.shape)] > 1.0):
            out.append(f"ice of glacier {name!r} reaches the domain edge in the final model")
        top = float(np.nanmax(speed[g])) if speed[g].size else 0.0
        if top > SPEED_CEILING:
            out.append(f"the final model's surface speed on glacier {name!r} reaches "
                       f"{top / 1e3:.3g} km a-1, above the plausible {SPEED_CEILING / 1e3:g} "
                       "km a-1")
    return out
