"""Figures of training outputs (PNG), drawn with matplotlib's Agg canvas.

No pyplot: figures are plain ``matplotlib.figure.Figure`` objects rendered by the Agg backend,
so nothing depends on a display or on the user's matplotlib backend. Files are written next to
their final name and renamed when complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io.cf import write_atomic


def _figure(width: float = 6.4, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120))


def loss_figure(path: str | os.PathLike, loss, loss_glacier=None, names=(), phase=()) -> Path:
    """``loss.png``: total loss per epoch (log y), each glacier's loss thin, L-BFGS shaded.

    Args:
        loss: (E,) total loss.
        loss_glacier: optional (E, G) per-glacier losses.
        names: the G glaciers' names (legend when there are few).
        phase: (E,) "adam" / "lbfgs".
    """
    loss = np.asarray(loss, np.float64)
    epochs = np.arange(1, loss.size + 1)
    fig = _figure()
    ax = fig.add_subplot()
    if loss_glacier is not None and np.size(loss_glacier):
        per = np.asarray(loss_glacier, np.float64)
        few = per.shape[1] <= 10
        for g in range(per.shape[1]):
            label = names[g] if few and g < len(names) else None
            ax.plot(epochs, per[:, g], lw=0.8, alpha=0.6, label=label)
    ax.plot(epochs, loss, color="k", lw=2, label="total")
    lbfgs = np.flatnonzero(np.asarray(phase) == "lbfgs")
    if lbfgs.size:
        ax.axvspan(lbfgs[0] + 0.5, loss.size + 0.5, color="0.9", zorder=0, label="L-BFGS")
    positive = np.concatenate([loss[np.isfinite(loss) & (loss > 0)],
                               np.ravel(loss_glacier)[np.isfinite(np.ravel(loss_glacier))
                                                      & (np.ravel(loss_glacier) > 0)]]
                              if loss_glacier is not None else loss[loss > 0])
    if positive.size:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised thickness misfit)")
    ax.set_title("glacier-train: loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def law_of_temperature_figure(path: str | os.PathLike, temperature, A_learned, *, A_true=None,
                              glacier_temperature=(), names=(), errors=None) -> Path:
    """``law.png``: learned (and true) A(T) on a log axis, the glaciers' temperatures marked."""
    T = np.asarray(temperature, np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    if A_true is not None:
        ax.plot(T, A_true, color="k", lw=2, label="true (Cuffey & Paterson 2010)")
    ax.plot(T, A_learned, color="C1", lw=2, ls="--", label="learned")
    Tg = np.asarray(glacier_temperature, np.float64)
    if Tg.size:
        ref = np.asarray(A_true if A_true is not None else A_learned, np.float64)
        ax.plot(Tg, np.interp(Tg, T, ref), "o", color="C0", ms=5,
                label="training glaciers")
        for t in np.unique(Tg[np.isfinite(Tg)]):
            ax.axvline(t, color="C0", lw=0.5, alpha=0.4)
    ax.set_yscale("log")
    ax.set_xlabel("long-term mean air temperature [degC]")
    ax.set_ylabel("A [Pa$^{-3}$ a$^{-1}$]")
    title = "glacier-train: rate factor A(T)"
    if errors:
        title += (f"\nmax rel. error {errors['max_rel_error']:.2%}, mean "
                  f"{errors['mean_rel_error']:.2%} over the glaciers' range")
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def law_of_inputs_figure(path: str | os.PathLike, H, slope, A_learned, *, temperature: float,
                         A_true=None) -> Path:
    """``law.png`` of a diffusivity network: log10 A over (H, slope) at one temperature."""
    fig = _figure()
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(np.asarray(slope), np.asarray(H), np.log10(np.asarray(A_learned)),
                         shading="auto", cmap="viridis")
    cbar = fig.colorbar(mesh, ax=ax)
    cbar.set_label("log10 A [Pa$^{-3}$ a$^{-1}$]")
    ax.set_xlabel("surface slope |grad S|")
    ax.set_ylabel("ice thickness H [m]")
    title = f"glacier-train: learned A(H, slope) at T = {temperature:.3g} degC"
    if A_true is not None:
        title += f"\ntrue A there: {A_true:.3g} Pa$^{{-3}}$ a$^{{-1}}$"
    ax.set_title(title, fontsize="medium")
    return _save(fig, path)


def diffusivity_figure(path: str | os.PathLike, thickness, slope, D_learned, D_true,
                       state_density, *, temperature: float, summary: str = "") -> Path:
    """``law.png`` of the diffusivity twin: log10 D learned and true over (thickness, slope),
    and their ratio, with the visited states outlined (contours of the state density)."""
    H, s = np.asarray(thickness), np.asarray(slope)
    learned = np.asarray(D_learned, np.float64)
    density = np.asarray(state_density, np.float64)
    panels = [("learned: log10 D [m$^2$ a$^{-1}$]", np.log10(np.maximum(learned, 1e-30)),
               "viridis", None)]
    if D_true is not None:
        true = np.asarray(D_true, np.float64)
        lo = float(np.nanmin(np.log10(np.maximum(true[true > 0], 1e-30)), initial=0.0)) \
            if np.any(true > 0) else None
        panels[0] = (*panels[0][:3], lo)
        panels.append(("true: log10 D [m$^2$ a$^{-1}$]", np.log10(np.maximum(true, 1e-30)),
                       "viridis", lo))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(true > 0, learned / true, np.nan)
        panels.append(("learned / true", ratio, "RdBu_r", "ratio"))
    fig = _figure(5.0 * len(panels), 4.4)
    visited = density > 0
    levels = sorted({float(np.percentile(density[visited], q)) for q in (25, 75)}) \
        if visited.any() else []
    for k, (label, values, cmap, scale) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        kw = {}
        if scale == "ratio":
            kw = dict(vmin=0.5, vmax=1.5)
        elif scale is not None:
            kw = dict(vmin=scale)
        mesh = ax.pcolormesh(s, H, values, shading="auto", cmap=cmap, **kw)
        fig.colorbar(mesh, ax=ax)
        if levels and len(levels) >= 1:
            ax.contour(s, H, density, levels=levels, colors="k", linewidths=0.8)
        ax.set_xlabel("surface slope |grad S|")
        if k == 0:
            ax.set_ylabel("ice thickness [m]")
        ax.set_title(label, fontsize="medium")
    fig.suptitle(f"glacier-train: diffusivity at T = {temperature:.3g} degC (contours: "
                 f"visited states){chr(10) + summary if summary else ''}", fontsize="medium")
    return _save(fig, path)


def inversion_figure(path: str | os.PathLike, x, y, thickness, thickness_std, residual,
                     mask, *, title: str = "", crs: str | None = None,
                     error_floor: float = 0.0, held_out=None, folds=None) -> Path:
    """``inversion.png``: the inverted thickness with the radar cells, its total uncertainty
    (the fold spread and the cross-validated error floor in quadrature), the residuals at the
    observed cells (held out when cross-validated, else of the fit) and, with folds, the
    held-out residuals of each fold; map axes in km of the grid's CRS, units on the
    colourbars."""
    x = np.asarray(x) / 1e3
    y = np.asarray(y) / 1e3
    outside = np.asarray(mask) <= 0
    seen = np.isfinite(np.asarray(residual, np.float64))
    floor = float(error_floor) if np.isfinite(error_floor) else 0.0
    total = np.sqrt(np.asarray(thickness_std, np.float64) ** 2 + floor ** 2)
    cv = held_out is not None and folds is not None
    shown = np.asarray(held_out if cv else residual, np.float64)
    panels = [
        ("inverted thickness (dots: radar cells)", "ice thickness [m]",
         np.where(outside, np.nan, thickness), "viridis", None),
        (("uncertainty: fold spread" + (f" and {floor:.0f} m error floor" if floor else ""))
         if cv else "no uncertainty without cross-validation (invert.cv_folds)",
         "1 standard deviation [m]", np.where(outside | (not cv), np.nan, total), "magma",
         None),
        ("held-out residual (predicted without its fold)" if cv else
         "residual of the fit", "inverted - observed [m]", shown, "RdBu_r", "sym"),
    ]
    where = f" ({crs})" if crs else ""
    fig = _figure(19.0 if cv else 14.5, 4.8)
    n = len(panels) + (1 if cv else 0)
    for k, (label, unit, values, cmap, scale) in enumerate(panels):
        ax = fig.add_subplot(1, n, k + 1)
        values = np.asarray(values, np.float64)
        kw = {}
        if scale == "sym":
            finite = np.abs(values[np.isfinite(values)])
            vmax = float(np.percentile(finite, 98)) if finite.size else 1.0
            kw = dict(vmin=-vmax, vmax=vmax)
        if np.any(np.isfinite(values)):
            im = ax.pcolormesh(x, y, values, cmap=cmap, shading="nearest", **kw)
            fig.colorbar(im, ax=ax, shrink=0.85, label=unit)
        ax.contour(x, y, np.asarray(mask, np.float64), levels=[0.5], colors="k",
                   linewidths=0.8)
        if k == 0:
            jj, ii = np.nonzero(seen)
            ax.plot(x[ii], y[jj], ".", color="w", markersize=2.0, alpha=0.8)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel(f"x [km]{where}")
        if k == 0:
            ax.set_ylabel(f"y [km]{where}")
    if cv:
        ax = fig.add_subplot(1, n, n)
        f = np.asarray(folds)
        ids = [k for k in np.unique(f[f >= 0])]
        data = [shown[(f == k) & np.isfinite(shown)] for k in ids]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(ids) + 1),
                      [f"{k + 1}\n{np.sqrt(np.mean(d * d)):.0f} m" for k, d in zip(ids, data,
                                                                             strict=True)])
        ax.axhline(0.0, color="k", linewidth=0.6)
        ax.set_xlabel("fold (held-out RMSE)")
        ax.set_ylabel("held-out residual [m]")
        ax.set_title("held-out residuals by fold", fontsize="medium")
    if title:
        fig.suptitle(title, fontsize="medium")
    return _save(fig, path)
