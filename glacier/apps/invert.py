"""``glacier-invert``'s work: thickness, bed and A from observed thickness, cross-validated."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import invert as iv
from .. import plots
from ..compile import CompileClock
from ..domains import Domain
from ..io import inversion as inio
from ..io import provenance
from ..physics.params import Physics
from .common import bar, output_location, paragraph


@dataclasses.dataclass(frozen=True)
class InvertJob:
    """Everything an inversion needs.

    Attributes:
        domain: the glacier, with a mask and thickness observations.
        physics: physical parameters (A: the prior and the start of A).
        options: controls, cost, optimiser and cross-validation (``invert.InvertOptions``).
        law: the initial law of a functional inversion (``options.A == "law"``), else None.
        A_prior_source: where ``physics.A`` (the prior of A) comes from, for the outputs.
        seed: seeds the folds; config_yaml, argv: recorded.
    """

    domain: Domain
    physics: Physics
    options: iv.InvertOptions
    law: Any = None
    A_prior_source: str = "physics.A"
    seed: int = 0
    config_yaml: str = ""
    argv: tuple[str, ...] = ()


def run(job: InvertJob, out_dir: Path) -> int:
    """See ``_run``; JAX's compile time during the run is measured (``CompileClock``)."""
    with CompileClock() as clock:
        return _run(job, out_dir, clock)


def _run(job: InvertJob, out_dir: Path, clock: CompileClock) -> int:
    """The work of ``glacier-invert`` in ``out_dir``; returns the exit status (0; 3 when an
    inversion failed numerically, with the last good state of each written).

    domain (mask, surface, observations) -> ``invert.InversionData`` -> K-fold spatial
    cross-validation of the adjoint inversion and of the baseline (when ``cv_folds`` >= 2)
    -> final inversion on all observations -> ``inversion.nc``, ``inversion.png``,
    ``provenance.json`` -> one summary line.
    """
    start = time.perf_counter()
    out_dir = output_location(out_dir, "inversion.nc", "inversion.png", "provenance.json")
    options, domain = job.options, job.domain
    k = int(options.cv_folds)
    data = iv.InversionData.from_domain(domain, job.physics)
    law0 = job.law if options.A == "law" else None
    record = provenance.collect(list(job.argv), int(job.seed))
    config_yaml = job.config_yaml

    runs = (k + 1) if k else 1
    progress = bar(runs * (options.iterations + options.warmup),
                   f"glacier-invert {domain.name}",
                   "{desc}: {n}/{total} |{bar}| {postfix} [{elapsed}<{remaining}]")
    stage = {"name": "fold 1" if k else "final"}

    def on_iteration(it: int, terms: dict[str, float]) -> None:
        progress.update(1)
        shown = " ".join(f"{key} {v:.3g}" for key, v in terms.items() if key != "total")
        progress.set_postfix_str(f"{stage['name']}: cost {terms['total']:.4g} ({shown})")

    def on_fold(f: int, scores: dict[str, float]) -> None:
        stage["name"] = f"fold {f + 2}" if f + 1 < k else "final"
        progress.write(f"glacier-invert: fold {f + 1}/{k}: held-out RMSE {scores['rmse']:.1f} m "
                  f"(baseline {scores['baseline_rmse']:.1f} m)")

    try:
        if k:
            cv = iv.cross_validate(data, options, k, block=float(options.cv_block),
                                   seed=int(job.seed), on_fold=on_fold,
                                   callback=on_iteration, law=law0)
            final, std = cv.final, cv.thickness_std
            H_base, tau = cv.baseline_thickness, cv.baseline_tau
            scores = dict(cv_folds=k, cv_rmse=cv.rmse, cv_bias=cv.bias,
                          cv_within_spread=cv.within_spread,
                          cv_error_floor=cv.error_floor,
                          baseline_cv_rmse=cv.baseline_rmse,
                          baseline_cv_bias=cv.baseline_bias)
            if domain.thickness_reference is not None:
                scores.update(cv.against(domain.thickness_reference),
                              reference_source=domain.attrs.get("thickness_reference_source",
                                                                "thickness_reference"))
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
        progress.close()

    obs = data.thickness_obs
    mean_obs = float(np.nanmean(obs))
    seen = np.isfinite(obs)
    fit_rmse = float(np.sqrt(np.mean((final.thickness - obs)[seen] ** 2)))
    A_value = np.asarray(final.A)
    status = "completed" if not failures else "failed: " + "; ".join(failures)
    warnings = list(final.warnings)
    summary = dict(status=status, warnings="; ".join(warnings), glacier=domain.name,
                   A_prior=float(data.physics.A), A_prior_source=job.A_prior_source,
                   baseline_tau=tau,
                   mean_obs_thickness=mean_obs, fit_rmse=fit_rmse,
                   iterations=final.iterations, final_cost=final.history["total"][-1],
                   A_mean=float(np.exp(np.mean(np.log(A_value)))),
                   sliding_fraction=final.sliding_fraction,
                   volume=float(np.sum(final.thickness) * data.grid.cell_area), **scores)
    if final.balance is not None:
        summary.update(final.balance.as_attrs("balance_"))
    for term, values in final.history.items():
        summary[f"final_cost_{term}"] = values[-1]
    wall = time.perf_counter() - start
    summary.update(compile_time_s=clock.seconds, programs_compiled=clock.programs)
    record.update(summary, wall_time_s=wall, outputs=["inversion.nc", "inversion.png"])
    ds = inio.inversion_dataset(
        x=data.grid.x, y=data.grid.y, thickness=final.thickness, bed=final.bed, A=final.A,
        surface=data.surface, mask=data.mask, thickness_obs=obs, obs_count=data.obs_count,
        baseline_thickness=H_base, history=final.history, thickness_std=std, cv_fold=cv_fold,
        cv_prediction=cv_pred, fs=final.fs, attrs=summary, config_yaml=config_yaml,
        provenance=record,
        crs=domain.attrs.get("crs"))
    path = inio.write_inversion(out_dir / "inversion.nc", ds)
    residual = np.where(seen, final.thickness - obs, np.nan)
    title = (f"{domain.name}: held-out RMSE {scores['cv_rmse']:.1f} m, bias "
             f"{_signed(scores['cv_bias'])} m (baseline {scores['baseline_cv_rmse']:.1f} m), "
             f"mean observed {mean_obs:.0f} m" if k else
             f"{domain.name}: fit RMSE {fit_rmse:.1f} m, mean observed {mean_obs:.0f} m")
    plots.inversion_figure(out_dir / "inversion.png", data.grid.x, data.grid.y,
                           final.thickness, np.zeros_like(final.thickness) if std is None
                           else std, residual, data.mask, title=title,
                           crs=domain.attrs.get("crs"), error_floor=scores["cv_error_floor"],
                           held_out=None if cv_pred is None else cv_pred - obs,
                           folds=cv_fold)
    provenance.write_json(out_dir / "provenance.json", record)
    cv_text = (f"held-out RMSE {scores['cv_rmse']:.1f} m ({scores['cv_rmse'] / mean_obs:.0%} "
               f"of the mean observed {mean_obs:.0f} m), bias {_signed(scores['cv_bias'])} m, "
               f"{scores['cv_within_spread']:.0%} within 2 std (95 % with an error floor of "
               f"{scores['cv_error_floor']:.0f} m); baseline "
               f"{scores['baseline_cv_rmse']:.1f} m, bias {_signed(scores['baseline_cv_bias'])} m"
               + (f"; reference ({scores['reference_source']}) {scores['reference_cv_rmse']:.1f}"
                  f" m on its {scores['reference_cells']} cells (ours "
                  f"{scores['cv_rmse_on_reference_cells']:.1f} m there)"
                  if scores.get("reference_cells") else "")
               if k else f"fit RMSE {fit_rmse:.1f} m (no cross-validation)")
    print(f"glacier-invert: {domain.name}: {cv_text}; A {summary['A_mean']:.3g} "
          f"Pa-3 a-1 (prior {summary['A_prior']:.3g}), "
          + (f"sliding {final.sliding_fraction:.0%} of the speed, "
             if final.fs is not None else "") + f"volume {summary['volume'] / 1e9:.4g} "
          f"km3, wall {wall:.3g} s (compiling {clock.seconds:.3g} s)"
          + (f", {len(warnings)} warning(s)" if warnings else "") + f" -> {path}", flush=True)
    for w in warnings:
        print(paragraph(f"glacier-invert: warning: {w}."), file=sys.stderr)
    if failures:
        print(paragraph(
            f"glacier-invert: error: {'; '.join(failures)} The outputs ({path}) hold the last "
            "good state of each inversion; the scores use them."), file=sys.stderr)
        return 3
    return 0


def _signed(x: float) -> str:
    """``x`` as "+1.2" / "-1.2", and "0.0" where it rounds to zero (never "-0.0")."""
    text = f"{x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text
