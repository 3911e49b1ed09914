"""``InvertOptions``: what to invert and how; the single source of the ``invert`` config node
(defaults and help text), with the enums of its two choice fields."""

from __future__ import annotations

import dataclasses
import enum

from ..options import option


class InvertA(enum.StrEnum):
    """How Glen's A enters the inversion (``InvertOptions.A``)."""

    none = "none"
    scalar = "scalar"
    field = "field"
    law = "law"


class InvertSliding(enum.StrEnum):
    """How Budd sliding enters the inversion (``InvertOptions.sliding``)."""

    none = "none"
    scalar = "scalar"
    field = "field"


class Optimizer(enum.StrEnum):
    """Optimiser of the inversion (``InvertOptions.optimizer``)."""

    lbfgs = "lbfgs"
    adam = "adam"


def _choice(name: str, value, cls: type[enum.Enum]) -> enum.Enum:
    """``value`` (a member, another enum's member or a plain string) as a member of ``cls``."""
    if isinstance(value, cls):
        return value
    raw = value.value if isinstance(value, enum.Enum) else value
    try:
        return cls(raw)
    except ValueError:
        names = [m.value for m in cls]
        choices = ", ".join(names[:-1]) + " or " + names[-1]
        raise ValueError(f"{name}={raw!r}: choose {choices}.") from None


_POSITIVE = ("obs_error", "surface_error", "thickness_scale", "max_dt", "dt", "A_step",
             "cv_block", "fs", "sliding_step")
_NON_NEGATIVE = ("relax_years", "obs_time", "smooth_thickness", "smooth_A", "A_prior_error",
                 "prior_error", "surface_smoothing", "surface_bands", "slope_smoothing",
                 "law_l2", "velocity_error", "smooth_sliding", "sliding_prior_error",
                 "balance_error")

FS_OERLEMANS = 5.7e-20 * 365.25 * 86400.0
"""Budd sliding parameter of Oerlemans (1997), 5.7e-20 Pa^-3 m^2 s^-1, in Pa^-3 m^2 a^-1 (also
OGGM's): about 12 m a^-1 of sliding under 100 m of ice on a 0.1 slope."""


@dataclasses.dataclass(frozen=True)
class InvertOptions:
    """What to invert and how (the cost is written out in the docstring of
    ``glacier.invert``).

    Args:
        A: "none" (keep A fixed), "scalar", "field", or "law": the parameters of a learned
            law (``glacier.laws``; a functional inversion) give the creep factor.
        relax_years: length T of the relaxation run [a]; 0 switches J_surf off.
        obs_time: time [a] after the surface DEM at which the thickness was observed: the
            thickness control is then the initial state of a transient run, and J_obs
            compares the run's thickness at ``obs_time`` with the observations (0: the
            observations are of the initial state).
        dhdt: surface-elevation change the relaxed surface should show [m a^-1] where the
            glacier's file has no ``dhdt(y, x)`` (NaN there: unknown); with ``apparent_smb``
            the mass balance is shifted to a glacier-wide mean of the dhdt field.
        apparent_smb: shift the mass balance to zero glacier-wide balance.
        obs_error: sigma_H [m]; surface_error: sigma_S [m].
        surface_smoothing: Gaussian scale [m] of an average of the surface misfit over the
            mask before it is squared (0: cell by cell).
        surface_bands: width [m] of elevation bands (of the observed surface) over which the
            surface misfit is averaged before it is squared, each band weighted by its area
            (0: cell by cell, or ``surface_smoothing``): the glacier-scale comparison of
            flux divergence and mass balance that OGGM-style flowline inversions make.
        slope_smoothing: standard deviation [m] of a Gaussian smoothing of the DEM over the
            grid (``domains.real.smooth_surface``, planes unchanged) before anything flows:
            the SIA's local flux follows cell-scale bumps of the DEM that the longitudinal
            stresses it leaves out average over a few ice thicknesses (0: the DEM as given).
        balance_error: sigma_b [m a^-1] of J_balance (``cost.balance_misfit``): the SIA flux
            of the thickness through every contour of the surface, ``balance_contour`` [m]
            apart, against the balance flux there (the integral of b - dhdt above it, b the
            apparent mass balance), each error as the glacier-wide mean balance it would take;
            0 switches it off.
        smooth_thickness, smooth_A: lambda_H, lambda_A.
        smooth_residual: apply the thickness smoothness to H - H_b (true) or H (false).
        prior_error: sigma [m] of J_prior = mean over the mask ((H - H_b) / sigma)^2, a pull
            toward the calibrated baseline H_b; 0 switches it off.
        A_prior_error: standard deviation of ln A about the prior (the physics' A) in the
            term J_A = mean((ln A - ln A_prior) / A_prior_error)^2; 0 switches it off.
        A_max_factor: R > 1: ln A = ln A_prior + ln R tanh(A_step a / ln R), so A stays
            within a factor R of the prior by construction (0: ln A = ln A_prior + A_step a,
            unbounded). An A within 5 % (in ln) of a bound is reported (``warnings``).
        A_warmup: iterations with A held at the prior before A is a control too (from a
            rough thickness, shrinking A towards 0 lowers the surface misfit fastest and
            the optimiser stalls there with no flow; the warm-up avoids that basin).
        A_step: ln A = ln A_prior + A_step a with the control a (preconditioning: the
            smaller, the more cautious the first changes of A).
        sliding: "none" (the physics' fs, fixed), "scalar" or "field": Budd sliding
            fs = R fs_ref sigmoid(sliding_step c + logit(0.01 / R)) with the control c
            (``cost.sliding_factor``; c = 0: fs = 0.01 fs_ref), non-negative and below
            R fs_ref by construction (R = ``fs_max_factor``); an fs within 5 % of the bound is
            reported (``warnings``). The warm-up holds fs at its start.
        fs: fs_ref, the scale of sliding [Pa^-3 m^2 a^-1] (default Oerlemans'
            5.7e-20 Pa^-3 m^2 s^-1).
        fs_max_factor: R > 1, the upper bound of fs in units of fs_ref.
        sliding_step: scale of the sliding control (per unit of c, fs changes by about a
            factor e^sliding_step well below its bound).
        sliding_prior_error: sigma_s of J_s = mean((fs / fs_ref / sigma_s)^2), a pull toward
            no sliding (0 switches it off).
        smooth_sliding: lambda_s, weight of the Tikhonov smoothness of fs / fs_ref
            (sliding="field").
        law_l2: weight of the squared L2 norm of the law's parameters (A="law").
        velocity_error: sigma_u [m a^-1] of the misfit of the SIA surface speed of the
            initial state to ``velocity_obs`` (0 switches it off).
        optimizer: "lbfgs" or "adam"; iterations; lr (Adam).
        cfl, max_dt: explicit stepping of the relaxation run.
        scheme, dt: "explicit" or "rkl2" (cfl, max_dt) or "implicit" (backward Euler, step
            dt [a]);
            ``solver.scheme`` and ``solver.dt`` of ``glacier-invert``.
        thickness_scale: s of the softplus parameterisation [m].
        cv_folds, cv_block: spatial cross-validation (``cross_validate``): number of folds
            (0: none) and side [m] of the blocks dealt to them.
    """

    A: InvertA = option(InvertA.scalar,
                        "Glen's A: none (fixed at physics.A), scalar (one value, "
                        "log-parameterised), field (smooth log A on the grid) or "
                        "law (the parameters of law=NAME: functional inversion)")
    relax_years: float = option(5.0, "length of the relaxation run whose surface is compared "
                                     "with the observed one [a]; 0 switches the surface term "
                                     "off")
    obs_time: float = option(0.0, "years after the surface DEM when the thickness was observed "
                                  "(> 0: the thickness control is the start of a transient "
                                  "run)")
    dhdt: float = option(0.0, "surface-elevation change the relaxed surface should show "
                              "[m a-1] where the glacier file has no dhdt; 0 = steady state")
    apparent_smb: bool = option(True, "shift the mass balance to zero glacier-wide balance "
                                      "(apparent mass balance)")
    obs_error: float = option(10.0, "observational error of the thickness [m]")
    surface_error: float = option(5.0, "tolerated misfit of the relaxed surface [m]")
    surface_smoothing: float = option(0.0, "Gaussian scale [m] over which the surface misfit "
                                           "is averaged before it is squared; 0 = cell by "
                                           "cell")
    surface_bands: float = option(0.0, "width [m] of the elevation bands over which the "
                                       "surface misfit is averaged (0 = cell by cell)")
    balance_error: float = option(0.0, "error [m a-1, as a glacier-wide mean balance] of the "
                                       "SIA flux through every contour against the balance "
                                       "flux (what the apparent mass balance delivers above "
                                       "it); 0 = off")
    balance_contour: float = option(10.0, "interval [m] of the surface contours of the "
                                          "balance term (invert.balance_error)")
    outline: str = option("open", "closed: no ice crosses the glacier's outline (the mask), "
                                  "in the relaxation run and the flux terms; open: ice "
                                  "leaves wherever the surface slopes out of the mask")
    slope_smoothing: float = option(0.0, "Gaussian scale [m] of the DEM smoothing before the "
                                         "flow is computed (the relaxation run starts from and "
                                         "is compared with the smoothed surface); 0 = the DEM "
                                         "as given")
    smooth_thickness: float = option(1.0, "weight of the Tikhonov smoothness of the thickness")
    smooth_residual: bool = option(True, "smooth the departure from the calibrated baseline "
                                         "(true) or the thickness itself (false)")
    prior_error: float = option(0.0, "standard deviation [m] of a pull toward the baseline "
                                     "thickness; 0 = off")
    smooth_A: float = option(10.0, "weight of the Tikhonov smoothness of log A (A=field)")
    A_prior_error: float = option(0.0, "standard deviation of ln A about physics.A; 0 = no "
                                       "prior")
    A_max_factor: float = option(10.0, "A stays within this factor of its prior (a bounded "
                                       "parameterisation; an A at a bound is reported as a "
                                       "warning); 0 = unbounded")
    A_warmup: int = option(20, "iterations with A held at physics.A before A is inverted too")
    A_step: float = option(0.1, "scale of the A control: ln A = ln physics.A + A_step a")
    sliding: InvertSliding = option(InvertSliding.none,
                                    "Budd sliding: none (physics.fs, fixed), scalar (one fs) "
                                    "or field (a smooth non-negative fs on the grid)")
    fs: float = option(FS_OERLEMANS, "scale fs_ref of the sliding parameter [Pa-3 m2 a-1] "
                                     "(default Oerlemans 1997); sliding starts at 0.01 fs_ref")
    fs_max_factor: float = option(10.0, "fs stays below this factor of invert.fs (an fs at "
                                        "the bound is reported as a warning)")
    sliding_step: float = option(1.0, "scale of the sliding control: ln fs changes by about "
                                      "sliding_step per unit of the control")
    sliding_prior_error: float = option(1.0, "standard deviation of fs / invert.fs in a pull "
                                             "toward no sliding; 0 = off")
    smooth_sliding: float = option(10.0, "weight of the Tikhonov smoothness of fs / invert.fs "
                                         "(sliding=field)")
    law_l2: float = option(0.0, "weight of the L2 norm of the law's parameters (invert.A=law)")
    velocity_error: float = option(0.0, "error [m a-1] of the surface-speed misfit against "
                                        "the file's velocity_obs; 0 = no speed misfit")
    optimizer: Optimizer = option(Optimizer.lbfgs, "lbfgs or adam")
    iterations: int = option(40, "optimiser iterations of each inversion")
    lr: float = option(0.05, "learning rate (adam)")
    cfl: float = option(0.124, "stability factor of the relaxation run, in (0, 0.25]")
    max_dt: float = option(0.25, "largest time step of the relaxation run [a]")
    scheme: str = option("explicit", "scheme of the relaxation run: explicit or implicit")
    dt: float = option(1.0, "step of the implicit relaxation run [a]")
    thickness_scale: float = option(10.0, "scale [m] of the softplus that keeps H >= 0")
    cv_folds: int = option(5, "spatial cross-validation folds (0: no cross-validation)")
    cv_block: float = option(500.0, "side of the square blocks dealt to the folds [m]")

    def __post_init__(self):
        object.__setattr__(self, "A", _choice("A", self.A, InvertA))
        object.__setattr__(self, "sliding", _choice("sliding", self.sliding, InvertSliding))
        object.__setattr__(self, "optimizer", _choice("optimizer", self.optimizer, Optimizer))
        for key in _POSITIVE:
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}={getattr(self, key)} must be positive.")
        for key in _NON_NEGATIVE:
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 0.")
        if not 0 < self.cfl <= 0.25:
            raise ValueError(f"cfl={self.cfl} must be in (0, 0.25], e.g. 0.124.")
        if self.scheme not in ("explicit", "rkl2", "implicit"):
            raise ValueError(f"scheme={self.scheme!r} must be explicit, rkl2 or implicit.")
        if not (self.A_max_factor == 0 or self.A_max_factor > 1):
            raise ValueError(f"A_max_factor={self.A_max_factor} must be > 1 (e.g. 10: A within "
                             "a factor 10 of its prior) or 0 (unbounded).")
        if not self.fs_max_factor > 1:
            raise ValueError(f"fs_max_factor={self.fs_max_factor} must be > 1 (e.g. 10: fs "
                             "below 10 invert.fs).")
        if self.sliding != "none" and self.A == "law":
            raise ValueError("sliding=" + str(self.sliding) + " with A=law: a learned law "
                             "has its own sliding; use sliding=none.")
        if self.A_warmup < 0:
            raise ValueError(f"A_warmup={self.A_warmup} must be >= 0.")
        if self.iterations < 1:
            raise ValueError(f"iterations={self.iterations} must be >= 1.")
        if self.outline not in ("open", "closed"):
            raise ValueError(f"outline={self.outline!r} must be open or closed.")
        if not self.balance_contour > 0:
            raise ValueError(f"balance_contour={self.balance_contour} must be positive "
                             "(metres of elevation between contours, e.g. 10).")
        if self.cv_folds < 0 or self.cv_folds == 1:
            raise ValueError(f"cv_folds={self.cv_folds}: use 0 (no cross-validation) or at "
                             "least 2 folds.")

    @property
    def warmup(self) -> int:
        """Iterations run with A (and fs) fixed before they are controls (0 when neither is
        inverted or there is no relaxation run to inform them)."""
        inverted = self.A != "none" or self.sliding != "none"
        informed = self.relax_years > 0 or self.balance_error > 0
        return self.A_warmup if inverted and informed else 0
