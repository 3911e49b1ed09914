"""Why an inversion switches the flow off: the apparent mass balance against the SIA flux
divergence at thicknesses we trust, with the raw and with a smoothed surface.

In steady state the ice flux must carry away what the mass balance delivers: div q = b - dhdt.
With the glacier-wide balance shifted to zero (the apparent mass balance b_app of Farinotti et
al. 2009), the flux divergence of a good thickness map under a plausible A should explain b_app.
Measured here for Cuffey & Paterson's A at the glacier's temperature (no sliding):

- cell by cell: RMS of div q against RMS of b_app, and 1 - sum (b_app - div q)^2 / sum b_app^2
  (1: explained, 0: no better than no flow, < 0: worse, and an inversion whose surface term
  asks for balance cell by cell drives A to 0);
- at glacier scale (``glacier.invert.diagnostics``): the same fraction over 50 m elevation
  bands, and the ratio of the SIA flux through the contour where the balance flux peaks to that
  balance flux (1: the glacier carries what its mass balance needs; since the flux is linear in
  A, 1 / ratio is the factor on A that would balance it).

Thicknesses: the calibrated perfect-plasticity baseline and the no-physics fit (the inversion
with ``relax_years=0``: radar, smoothness and the baseline only). Surfaces: the DEM as given and
smoothed by a Gaussian of ``--smoothing`` metres (``invert.slope_smoothing``).

And the flux profile of the no-physics fit (raw DEM): for every ``--contour`` metres of
elevation, the balance flux (the integral of b_app above the contour) against the SIA flux out
of the glacier above it (the sum of div q there, ``invert.balance_error``'s comparison), and
per band the balance b_app against the divergence, whose difference is the thickness change
this flux would need (dhdt = b_app - div q) to be in balance with the mass balance.

Prints tables and writes JSON (``--out``). Not a test.

    python scripts/diagnose_inversion.py [--glacier south_glacier] [--smoothing 0,100,200,400]
        [--iterations 40] [--contour 50] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from glacier import invert as iv  # noqa: E402
from glacier.domains import build_domain  # noqa: E402
from glacier.invert.diagnostics import flux_divergence  # noqa: E402
from glacier.invert.loop import contour_levels, contour_regions  # noqa: E402
from glacier.laws import ClosedOutline, cuffey_paterson_A, glen_law  # noqa: E402


def cell_explained(target, div, mask) -> float:
    m = mask > 0
    return float(1.0 - np.sum((target[m] - div[m]) ** 2) / np.sum(target[m] ** 2))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--glacier", default="south_glacier")
    p.add_argument("--smoothing", default="0,100,200,400",
                   help="Gaussian standard deviations of the surface [m], comma-separated")
    p.add_argument("--iterations", type=int, default=40, help="of the no-physics fit")
    p.add_argument("--contour", type=float, default=50.0,
                   help="contour interval [m] of the flux profile")
    p.add_argument("--out", default="diagnose_inversion.json")
    args = p.parse_args(argv)

    domain = build_domain(args.glacier)
    T = -5.0 if domain.temperature is None else float(domain.temperature)
    physics = domain.physics.replace(A=float(cuffey_paterson_A(T)))
    data = iv.InversionData.from_domain(domain, physics)
    start = time.perf_counter()
    H_base, tau = iv.baseline(data, data.obs_count)
    fit = iv.invert(data, iv.InvertOptions(A="none", relax_years=0.0, cv_folds=0,
                                           iterations=args.iterations), H_init=H_base)
    fit_s = time.perf_counter() - start
    rows = []
    for L in [float(v) for v in args.smoothing.split(",")]:
        inv = iv.Inverter(data, iv.InvertOptions(A="none", slope_smoothing=L))
        S = np.asarray(inv.consts["S_obs"])
        target = np.asarray(inv.consts["smb"](jnp.asarray(S)))
        for name, H in (("baseline", H_base), ("no-physics fit", fit.thickness)):
            check = inv.balance(inv.init_params(H))
            div = flux_divergence(H, S, glen_law(physics), data.grid)
            rows.append(dict(smoothing_m=L, thickness=name,
                             roughness_m=float(np.sqrt(np.mean(
                                 (data.surface - S)[data.mask > 0] ** 2))),
                             cell_explained=cell_explained(target, div, data.mask),
                             **check.as_attrs()))
    profile = flux_profile(data, physics, fit.thickness, args.contour)
    result = dict(glacier=args.glacier, temperature=T, A_cp=physics.A, baseline_tau=tau,
                  fit_seconds=fit_s, rows=rows, profile=profile)
    r0 = rows[0]
    print(f"{args.glacier}: T {T:.2f} degC, A_CP {physics.A:.3g} Pa-3 a-1, RMS apparent smb "
          f"{r0['rms_target']:.2f} m a-1; balance flux {r0['flux'] / 1e6:.2f} Mm3 a-1 "
          f"through the {r0['contour']:.0f} m contour")
    print(f"{'smoothing':>9} {'thickness':>15} {'DEM-S':>6} | {'rms div q':>9} "
          f"{'cell expl':>9} | {'band expl':>9} {'flux ratio':>10}")
    for r in rows:
        print(f"{r['smoothing_m']:>7.0f} m {r['thickness']:>15} {r['roughness_m']:>6.2f} | "
              f"{r['rms_divergence']:>9.2f} {r['cell_explained']:>9.2f} | "
              f"{r['band_explained']:>9.2f} {r['flux_ratio']:>10.2f}")
    print(f"flux profile of the no-physics fit (raw DEM, A_CP), {args.contour:g} m contours:")
    print("Mm3 a-1 out of the glacier above each contour: the balance flux, the SIA's with the "
          "outline open and closed (invert.outline); the band above the contour, open outline")
    print(f"{'contour':>7} {'area km2':>8} | {'balance':>8} {'SIA open':>8} {'ratio':>6} "
          f"{'closed':>8} {'ratio':>6} | {'b_app':>6} {'div q':>6} {'dhdt needed':>11}")
    for r in profile:
        print(f"{r['contour_m']:>7.0f} {r['area_above_km2']:>8.2f} | "
              f"{r['balance_flux'] / 1e6:>8.3f} {r['sia_flux'] / 1e6:>8.3f} "
              f"{r['ratio']:>6.2f} {r['sia_flux_closed'] / 1e6:>8.3f} {r['ratio_closed']:>6.2f}"
              f" | {r['band_b_app']:>6.2f} {r['band_div_q']:>6.2f} "
              f"{r['band_dhdt_needed']:>11.2f}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return result


def flux_profile(data, physics, H, interval: float) -> list[dict]:
    """Balance flux and SIA flux (at ``physics``' A) out of the glacier above every contour,
    and the band between a contour and the next: mean b_app, mean div q, their difference."""
    inv = iv.Inverter(data, iv.InvertOptions(A="none"))
    S = np.asarray(inv.consts["S_obs"])
    target = np.asarray(inv.consts["smb"](jnp.asarray(S)))
    div = flux_divergence(H, S, glen_law(physics), data.grid)
    closed = flux_divergence(H, S, ClosedOutline(glen_law(physics), jnp.asarray(data.mask)),
                             data.grid)
    above = contour_regions(S, data.mask, interval)
    ice = data.mask > 0
    levels = contour_levels(S, data.mask, interval)
    area = data.grid.cell_area
    rows = []
    for j, region in enumerate(above):
        band = region.astype(bool) & ~(above[j + 1].astype(bool) if j + 1 < len(above)
                                       else np.zeros_like(ice))
        bal = float(np.sum(region * target) * area)
        sia_q = float(np.sum(region * div) * area)
        sia_closed = float(np.sum(region * closed) * area)
        rows.append(dict(contour_m=float(levels[j]),
                         area_above_km2=float(region.sum() * area / 1e6),
                         balance_flux=bal, sia_flux=sia_q,
                         ratio=sia_q / bal if bal > 0 else float("nan"),
                         sia_flux_closed=sia_closed,
                         ratio_closed=sia_closed / bal if bal > 0 else float("nan"),
                         band_b_app=float(target[band].mean()) if band.any() else float("nan"),
                         band_div_q=float(div[band].mean()) if band.any() else float("nan"),
                         band_dhdt_needed=(float((target - div)[band].mean()) if band.any()
                                           else float("nan"))))
    return rows


if __name__ == "__main__":
    main()
