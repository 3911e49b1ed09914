"""Structured-config schemas for the console scripts, and the factories that turn a config into
library objects.

Every config group of ``configs/`` is backed by a dataclass registered in Hydra's ConfigStore
as ``<option>_schema`` (e.g. ``glacier/halfar_schema``); each YAML option lists its schema first
in its defaults list. A misspelt key (``solver.cfll=0.1``) or a value of the wrong type
(``solver.cfl=abc``) therefore fails when Hydra composes the config, before anything runs. The
help text of every key lives here, once, in the field's ``metadata["help"]``.

``null`` in ``physics`` and in ``solver.t_end``/``save_every``/``max_dt`` means "the domain's
default" (Bueler's A = 1e-16 for ``halfar``, OGGM's A for ``synthetic_valley``, ...);
``build_run`` resolves them, and ``resolved_config`` writes the values actually used back into
the config that goes into the output files.

The factories only translate: physics lives in ``simulation``, ``solver`` and ``domains``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from . import domains
from . import solver as slv
from .errors import ConfigError


def _opt(default: Any, help: str, **kwargs) -> Any:
    """A dataclass field with a default and its help text."""
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help},
                     **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


# --------------------------------------------------------------------------------------------
# glacier=...: one schema per domain; the defaults are those of the builder's signature
# (``glacier.domains.options(name)``; tests/cli/test_configs.py checks that they agree).


@dataclass
class HalfarConfig:
    """``glacier=halfar``: Bueler et al. (2005) Test B, the Halfar dome on a flat bed."""

    name: str = _opt("halfar", "domain name (the glacier= option)")
    dx: float = _opt(20e3, "grid spacing [m]; must divide half_width")
    half_width: float = _opt(1200e3, "half-width of the square domain [m]")
    H0: float = _opt(3600.0, "dome thickness at t0 [m]")
    R0: float = _opt(750e3, "dome radius at t0 [m]")


@dataclass
class EismintFixedConfig:
    """``glacier=eismint_fixed``: EISMINT I fixed margin (Huybrechts, Payne et al. 1996)."""

    name: str = _opt("eismint_fixed", "domain name (the glacier= option)")
    dx: float = _opt(50e3, "grid spacing [m]; must divide size")
    size: float = _opt(1500e3, "side of the square domain [m]")
    accumulation: float = _opt(0.3, "uniform accumulation [m ice a-1]")


@dataclass
class EismintMovingConfig:
    """``glacier=eismint_moving``: EISMINT I moving margin (Huybrechts, Payne et al. 1996)."""

    name: str = _opt("eismint_moving", "domain name (the glacier= option)")
    dx: float = _opt(50e3, "grid spacing [m]; must divide size")
    size: float = _opt(1500e3, "side of the square domain [m]")
    max_accumulation: float = _opt(0.5, "largest accumulation [m ice a-1]")
    s: float = _opt(1e-5, "mass-balance gradient with distance [a-1]")
    R_el: float = _opt(450e3, "distance of the equilibrium line from the centre [m]")


@dataclass
class BedrockStepConfig:
    """``glacier=bedrock_step``: Jarosch, Schoof & Anslow (2013) as a strip periodic in y."""

    name: str = _opt("bedrock_step", "domain name (the glacier= option)")
    dx: float = _opt(200.0, "grid spacing [m]; must divide length")
    length: float = _opt(30e3, "half-length of the mirrored strip [m]")
    rows: int = _opt(3, "number of identical rows (>= 3)")
    b0: float = _opt(500.0, "height of the bedrock step [m]")
    x_s: float = _opt(7e3, "position of the step [m]")
    x_m: float = _opt(20e3, "end of the accumulation area [m]")
    m0: float = _opt(2.0, "mass-balance scale [m ice a-1]")


@dataclass
class SyntheticValleyConfig:
    """``glacier=synthetic_valley``: an inclined parabolic valley with a bump (OGGM's figures)."""

    name: str = _opt("synthetic_valley", "domain name (the glacier= option)")
    nx: int = _opt(100, "cells across the valley")
    ny: int = _opt(100, "cells along the valley")
    dx: float = _opt(100.0, "grid spacing [m]")
    head: float = _opt(3000.0, "bed elevation at the head of the valley [m]")
    slope: float = _opt(2000.0 / 9900.0, "down-valley bed slope [1] (3000 -> 1000 m over 9.9 km)")
    side_rise: float = _opt(500.0, "rise of the bed at the valley sides [m]")
    bump_height: float = _opt(80.0, "height of the Gaussian bed bump [m]")
    bump_position: float = _opt(0.55, "position of the bump as a fraction of the length")
    bump_length: float = _opt(400.0, "e-folding length of the bump along the valley [m]")
    bump_width: float = _opt(600.0, "e-folding width of the bump across the valley [m]")
    ela: float = _opt(2600.0, "equilibrium-line altitude [m]")
    gradient: float = _opt(3e-3 * 1000.0 / 900.0, "mass-balance gradient [m ice a-1 m-1]")
    max_rate: float = _opt(math.inf, "cap on the mass-balance rate [m ice a-1]")
    temperature: float = _opt(-5.0, "mean air temperature at the glacier [degC]")
    t_end: float = _opt(100.0, "default simulated years (solver.t_end overrides)")
    save_every: float = _opt(10.0, "default years between saves (solver.save_every overrides)")


class Initial(enum.Enum):
    """Initial thickness of a real glacier (``glacier.domains.real.INITIAL_CHOICES``)."""

    auto = "auto"
    observed = "observed"
    zero = "zero"
    estimate = "estimate"


@dataclass
class RealGlacierConfig:
    """``glacier=hintereisferner`` / ``south_glacier``: a bundled real glacier (data/README.md)."""

    name: str = _opt(MISSING, "domain name (the glacier= option)")
    dx: float | None = _opt(
        None, "grid spacing [m]: null = the file's, else a multiple of it")
    initial: Initial = _opt(
        Initial.auto, "initial thickness: auto, observed, zero or estimate (shallow-ice)")
    smb_gradient: float | None = _opt(
        None, "mass-balance elevation feedback [m ice a-1 m-1]; null = fitted")
    basal_stress: float = _opt(100000.0, "basal shear stress of the thickness estimate [Pa]")
    t_end: float = _opt(100.0, "default simulated years (solver.t_end overrides)")
    save_every: float = _opt(10.0, "default years between saves (solver.save_every overrides)")


@dataclass
class NetcdfConfig(RealGlacierConfig):
    """``glacier=netcdf``: any NetCDF file that follows data/README.md's conventions."""

    name: str = _opt("netcdf", "domain name (the glacier= option)")
    path: str = _opt(MISSING, "path of the NetCDF file (required: glacier.path=FILE)")


GLACIER_SCHEMAS: dict[str, type] = {
    "halfar": HalfarConfig,
    "eismint_fixed": EismintFixedConfig,
    "eismint_moving": EismintMovingConfig,
    "bedrock_step": BedrockStepConfig,
    "synthetic_valley": SyntheticValleyConfig,
    "hintereisferner": RealGlacierConfig,
    "south_glacier": RealGlacierConfig,
    "netcdf": NetcdfConfig,
}
"""``glacier=`` option -> its schema."""


# --------------------------------------------------------------------------------------------
# physics=..., solver=...


@dataclass
class PhysicsConfig:
    """``physics``: Glen's-law parameters; null means the domain's default."""

    A: float | None = _opt(None, "Glen's rate factor [Pa^-3 a^-1] (e.g. 1e-16)")
    n: float | None = _opt(None, "Glen's exponent")
    rho: float | None = _opt(None, "ice density [kg m^-3]")
    g: float | None = _opt(None, "gravitational acceleration [m s^-2]")
    fs: float | None = _opt(None, "sliding parameter [Pa^-3 m^2 a^-1]; 0 disables sliding")


class Dtype(enum.Enum):
    """Floating-point precision of the fields."""

    float64 = "float64"
    float32 = "float32"


@dataclass
class SolverConfig:
    """``solver``: time span, saving and explicit stepping; null means the domain's default."""

    t_end: float | None = _opt(None, "simulated years from the start")
    save_every: float | None = _opt(None, "years between saved states (the last one is saved)")
    cfl: float = _opt(0.124, "stability factor: dt = cfl dx^2 / max(D), in (0, 0.25]")
    max_dt: float | None = _opt(None, "largest time step [a]")
    max_steps: int = _opt(10_000_000, "step budget per save interval")
    dtype: Dtype = _opt(Dtype.float64, "precision of the fields: float64 or float32")
    area_threshold: float = _opt(1.0, "thickness [m] above which a cell counts in area")


@dataclass
class SimulateConfig:
    """The primary config of ``glacier-simulate`` (``configs/simulate.yaml``)."""

    glacier: Any = _opt(MISSING, "the glacier: glacier=NAME selects a domain")
    physics: PhysicsConfig = _opt(PhysicsConfig(), "Glen's-law parameters")
    solver: SolverConfig = _opt(SolverConfig(), "time span and stepping")
    seed: int = _opt(0, "the one seed every random choice derives from")


GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "glacier": GLACIER_SCHEMAS,
    "physics": {"default": PhysicsConfig},
    "solver": {"default": SolverConfig},
}
"""Config group of ``glacier-simulate`` -> option -> schema (``TRAIN_GROUP_SCHEMAS``: those of
``glacier-train``; ``solver`` is shared)."""


# --------------------------------------------------------------------------------------------
# glacier-train: law=..., network, optimizer, loss, experiment=..., train.


@dataclass
class ConstantALawConfig:
    """``law=constant_A``: one trainable rate factor for every glacier."""

    name: str = _opt("constant_A", "law name (the law= option)")
    A: float = _opt(7.57e-17, "initial rate factor [Pa^-3 a^-1] (2.4e-24 s^-1 Pa^-3)")


@dataclass
class CuffeyPatersonLawConfig:
    """``law=cuffey_paterson``: Cuffey & Paterson's A(T), a fixed law with nothing to train."""

    name: str = _opt("cuffey_paterson", "law name (the law= option)")


@dataclass
class NeuralAofTLawConfig:
    """``law=nn_A_of_T``: A(T) from a network of the glacier's mean air temperature."""

    name: str = _opt("nn_A_of_T", "law name (the law= option)")
    T_mean: float = _opt(-12.5, "centre of the temperature input [degC]")
    T_scale: float = _opt(12.5, "scale of the temperature input [degC] (> 0)")
    A_min: float | None = _opt(None, "lower bound of A [Pa^-3 a^-1]; null = 3.5e-26 s^-1 Pa^-3")
    A_max: float | None = _opt(None, "upper bound of A [Pa^-3 a^-1]; null = 3.5e-24 s^-1 Pa^-3")


@dataclass
class NeuralDiffusivityLawConfig:
    """``law=nn_diffusivity``: a creep factor from a network of local (H, |grad S|, T)."""

    name: str = _opt("nn_diffusivity", "law name (the law= option)")
    H_scale: float = _opt(100.0, "scale of the thickness input [m] (> 0)")
    slope_scale: float = _opt(0.2, "scale of the surface-slope input [1] (> 0)")
    T_mean: float = _opt(-12.5, "centre of the temperature input [degC]")
    T_scale: float = _opt(12.5, "scale of the temperature input [degC] (> 0)")
    A_min: float | None = _opt(None, "lower bound of A [Pa^-3 a^-1]; null = 3.5e-26 s^-1 Pa^-3")
    A_max: float | None = _opt(None, "upper bound of A [Pa^-3 a^-1]; null = 3.5e-24 s^-1 Pa^-3")


LAW_SCHEMAS: dict[str, type] = {
    "constant_A": ConstantALawConfig,
    "cuffey_paterson": CuffeyPatersonLawConfig,
    "nn_A_of_T": NeuralAofTLawConfig,
    "nn_diffusivity": NeuralDiffusivityLawConfig,
}
"""``law=`` option -> its schema."""


class Activation(enum.Enum):
    """Activation of the hidden layers (``glacier.nn.ACTIVATIONS``)."""

    tanh = "tanh"
    gelu = "gelu"
    softplus = "softplus"
    relu = "relu"
    silu = "silu"


@dataclass
class NetworkConfig:
    """``network``: the multilayer perceptron of the neural laws."""

    hidden: list[int] = _opt([16, 16], "widths of the hidden layers, e.g. [32, 32]")
    activation: Activation = _opt(Activation.tanh, "activation: tanh, gelu, softplus, relu "
                                                   "or silu")


class Schedule(enum.Enum):
    """Learning-rate schedule of the Adam phase."""

    cosine = "cosine"
    constant = "constant"
    exponential = "exponential"


@dataclass
class OptimizerConfig:
    """``optimizer``: Adam with a learning-rate schedule, then optionally L-BFGS."""

    lr: float = _opt(0.003, "initial learning rate of Adam (> 0)")
    schedule: Schedule = _opt(Schedule.cosine, "learning-rate schedule over train.epochs: "
                                                "cosine, constant or exponential")
    decay: float = _opt(0.1, "final learning rate as a fraction of lr (cosine, exponential)")
    lbfgs_steps: int = _opt(50, "L-BFGS steps after the Adam epochs (0: none)")
    clip_norm: float | None = _opt(None, "clip gradients to this global norm; null: no clipping")


@dataclass
class LossConfig:
    """``loss``: regularisation added to the thickness misfit."""

    l2: float = _opt(0.0, "weight of the squared L2 norm of the law's parameters (>= 0)")
    velocity: float = _opt(0.0, "weight of the surface-speed misfit (needs speed observations, "
                                "e.g. experiment.velocity_obs=true; 0: off)")
    normalise: str = _opt("sensitivity", "per-glacier weights: sensitivity (balance how strongly "
                          "each glacier constrains A, see train.sensitivity_weights) or "
                          "thickness (mean observed thickness only)")


REAL_TWIN_GLACIERS = ("hintereisferner", "south_glacier")
"""Bundled real glaciers that ``experiment.real`` may list."""


@dataclass
class TwinAofTConfig:
    """``experiment=twin_A_of_T``: recover Cuffey & Paterson's A(T) from synthetic observations
    (``glacier.experiments.twin_A_of_T``)."""

    name: str = _opt("twin_A_of_T", "experiment name (the experiment= option)")
    dx: float = _opt(200.0, "common grid spacing [m] (real glaciers are resampled to it)")
    years: float = _opt(15.0, "length of the observed period [a]")
    obs_every: float = _opt(1.0, "years between observations")
    n_valleys: int = _opt(8, "number of synthetic valleys, temperatures spread over "
                             "[T_min, T_max]")
    real: list[str] = _opt(list(REAL_TWIN_GLACIERS), "bundled real glaciers to add "
                                                      "(hintereisferner, south_glacier)")
    T_min: float = _opt(-25.0, "temperature of the coldest valley [degC]")
    T_max: float = _opt(0.0, "temperature of the warmest valley [degC]")
    spinup_years: float = _opt(150.0, "spin-up of the valleys from no ice [a]")
    spinup_temperature: float = _opt(-10.0, "temperature of A during the spin-up [degC]")
    noise: float = _opt(0.0, "standard deviation of the observation noise [m]")
    obs_fraction: float = _opt(1.0, "fraction of ice cells observed each time, in (0, 1]")
    velocity_obs: bool = _opt(False, "also observe the true surface speed (for loss.velocity)")
    velocity_noise: float = _opt(0.0, "standard deviation of the speed noise [m a^-1]")


EXPERIMENT_SCHEMAS: dict[str, type] = {"twin_A_of_T": TwinAofTConfig}
"""``experiment=`` option -> its schema."""


@dataclass
class TrainLoopConfig:
    """``train``: epochs, checkpoints, resuming, devices."""

    epochs: int = _opt(20, "Adam epochs (one full-batch step on all glaciers each)")
    checkpoint_every: int = _opt(10, "epochs between checkpoints (also at the end and on "
                                     "Ctrl-C / SIGTERM)")
    keep_checkpoints: int = _opt(3, "number of most recent checkpoints kept")
    resume: bool = _opt(False, "continue from the latest checkpoint of hydra.run.dir")
    devices: int = _opt(1, "devices to split the glaciers across; 0 = all available")
    stop_after: int | None = _opt(None, "stop (as on Ctrl-C, but exit 0) after this epoch; "
                                        "for tests of resuming")


@dataclass
class TrainConfig:
    """The primary config of ``glacier-train`` (``configs/train.yaml``)."""

    law: Any = _opt(MISSING, "the learned law: law=NAME")
    network: NetworkConfig = _opt(NetworkConfig(), "network of the neural laws")
    optimizer: OptimizerConfig = _opt(OptimizerConfig(), "optimizer and schedule")
    loss: LossConfig = _opt(LossConfig(), "regularisation")
    experiment: Any = _opt(MISSING, "the training data: experiment=NAME")
    solver: SolverConfig = _opt(SolverConfig(), "stepping (cfl, max_dt, dtype); null = "
                                                 "the experiment's default")
    train: TrainLoopConfig = _opt(TrainLoopConfig(), "epochs, checkpoints, devices")
    seed: int = _opt(0, "the one seed every random choice derives from")


TRAIN_GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "law": LAW_SCHEMAS,
    "network": {"default": NetworkConfig},
    "optimizer": {"default": OptimizerConfig},
    "loss": {"default": LossConfig},
    "experiment": EXPERIMENT_SCHEMAS,
}
"""Config group of ``glacier-train`` (besides the shared ``solver``) -> option -> schema."""

# --------------------------------------------------------------------------------------------
# glacier-invert: the glacier (as glacier-simulate), physics, and the invert node.


class InvertA(enum.Enum):
    """How Glen's A enters the inversion (``glacier.invert.InvertOptions.A``)."""

    none = "none"
    scalar = "scalar"
    field = "field"
    law = "law"


class Optimizer(enum.Enum):
    """Optimiser of the inversion."""

    lbfgs = "lbfgs"
    adam = "adam"


@dataclass
class InvertSettings:
    """``invert``: controls, cost weights, optimiser and cross-validation of glacier-invert
    (the cost is written out in the docstring of ``glacier.invert``)."""

    A: InvertA = _opt(InvertA.scalar, "Glen's A: none (fixed at physics.A), scalar (one value, "
                                      "log-parameterised), field (smooth log A on the grid) or "
                                      "law (the parameters of law=NAME: functional inversion)")
    relax_years: float = _opt(5.0, "length of the relaxation run whose surface is compared "
                                   "with the observed one [a]; 0 switches the surface term off")
    obs_time: float = _opt(0.0, "years after the surface DEM when the thickness was observed "
                                "(> 0: the thickness control is the start of a transient run)")
    dhdt: float = _opt(0.0, "surface-elevation change the relaxed surface should show "
                            "[m a-1]; 0 = steady state")
    apparent_smb: bool = _opt(True, "shift the mass balance to zero glacier-wide balance "
                                    "(apparent mass balance)")
    obs_error: float = _opt(10.0, "observational error of the thickness [m]")
    surface_error: float = _opt(5.0, "tolerated misfit of the relaxed surface [m]")
    surface_smoothing: float = _opt(0.0, "Gaussian scale [m] over which the surface misfit "
                                           "is averaged before it is squared; 0 = cell by cell")
    smooth_thickness: float = _opt(1.0, "weight of the Tikhonov smoothness of the thickness")
    smooth_residual: bool = _opt(True, "smooth the departure from the calibrated baseline "
                                       "(true) or the thickness itself (false)")
    prior_error: float = _opt(0.0, "standard deviation [m] of a pull toward the baseline "
                                   "thickness; 0 = off")
    smooth_A: float = _opt(10.0, "weight of the Tikhonov smoothness of log A (A=field)")
    A_prior_error: float = _opt(0.0, "standard deviation of ln A about physics.A; 0 = no prior")
    A_warmup: int = _opt(20, "iterations with A held at physics.A before A is inverted too")
    A_step: float = _opt(0.1, "scale of the A control: ln A = ln physics.A + A_step a")
    law_l2: float = _opt(0.0, "weight of the L2 norm of the law's parameters (invert.A=law)")
    velocity_error: float = _opt(0.0, "error [m a-1] of the surface-speed misfit against the "
                                      "file's velocity_obs; 0 = no speed misfit")
    optimizer: Optimizer = _opt(Optimizer.lbfgs, "lbfgs or adam")
    iterations: int = _opt(40, "optimiser iterations of each inversion")
    lr: float = _opt(0.05, "learning rate (adam)")
    cfl: float = _opt(0.124, "stability factor of the relaxation run, in (0, 0.25]")
    max_dt: float = _opt(0.25, "largest time step of the relaxation run [a]")
    thickness_scale: float = _opt(10.0, "scale [m] of the softplus that keeps H >= 0")
    cv_folds: int = _opt(5, "spatial cross-validation folds (0: no cross-validation)")
    cv_block: float = _opt(500.0, "side of the square blocks dealt to the folds [m]")


@dataclass
class InvertConfig:
    """The primary config of ``glacier-invert`` (``configs/invert.yaml``)."""

    glacier: Any = _opt(MISSING, "the glacier: glacier=NAME selects a domain with a mask and "
                                 "thickness observations")
    physics: PhysicsConfig = _opt(PhysicsConfig(), "Glen's-law parameters (A: the prior)")
    law: Any = _opt(MISSING, "the learned law of invert.A=law: law=NAME")
    network: NetworkConfig = _opt(NetworkConfig(), "network of the neural laws")
    invert: InvertSettings = _opt(InvertSettings(), "controls, cost, optimiser, folds")
    seed: int = _opt(0, "the one seed every random choice derives from (the folds)")


PRIMARY_SCHEMAS: dict[str, type] = {"simulate": SimulateConfig, "train": TrainConfig,
                                    "invert": InvertConfig}
"""Primary config name -> schema."""

SELECTORS: dict[str, dict[str, dict[str, type]]] = {
    "simulate": {"glacier": GLACIER_SCHEMAS},
    "train": {"law": LAW_SCHEMAS, "experiment": EXPERIMENT_SCHEMAS},
    "invert": {"glacier": GLACIER_SCHEMAS, "law": LAW_SCHEMAS},
}
"""Primary config -> groups whose option is named by their ``name`` key -> option -> schema.
Their schema depends on the option, so ``typed`` looks it up from ``<group>.name``."""


def _all_groups() -> dict[str, dict[str, type]]:
    return {**GROUP_SCHEMAS, **TRAIN_GROUP_SCHEMAS}


def register() -> None:
    """Register every schema with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for group, schemas in _all_groups().items():
        for option, schema in schemas.items():
            cs.store(group=group, name=f"{option}_schema", node=schema)
    for name, schema in PRIMARY_SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=schema)


register()


def field_help(schema: type) -> dict[str, str]:
    """Field name -> help text of a schema dataclass."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(schema)}


# --------------------------------------------------------------------------------------------
# Factories: config -> library objects.


def _plain(node) -> Any:
    """A config node as plain Python values (enums by value)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, enum.Enum):
        return node.value
    return node


def typed(cfg: DictConfig, primary: str = "simulate") -> DictConfig:
    """``cfg`` merged into its schemas: checks keys and types of any config, also one that was
    loaded without them (a run directory's ``.hydra/config.yaml`` has no defaults list).

    Raises the OmegaConf error (``ConfigKeyError``, ``ValidationError``) of the first bad key;
    ``cli`` turns it into a one-paragraph message.
    """
    schema = PRIMARY_SCHEMAS[primary]
    chosen = {}
    for group, schemas in SELECTORS[primary].items():
        name = OmegaConf.select(cfg, f"{group}.name", default=None)
        option_schema = schemas.get(name) if isinstance(name, str) else None
        if option_schema is None:
            raise ConfigError(f"{group}.name={name!r} is not a known {group}. Choose one with "
                              f"{group}=NAME: {', '.join(schemas)}.")
        chosen[group] = option_schema(name=name)
    base = OmegaConf.structured(schema(**chosen))
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    out = OmegaConf.merge(base, plain)
    OmegaConf.set_struct(out, True)
    return out


def build_glacier(cfg_glacier) -> domains.Domain:
    """The domain of ``cfg.glacier``: ``build_domain(name, **the other glacier keys)``."""
    missing = sorted(OmegaConf.missing_keys(cfg_glacier)) if isinstance(
        cfg_glacier, DictConfig) else []
    if missing:
        keys = ", ".join(f"glacier.{k}" for k in missing)
        raise ConfigError(f"{keys} must be set for glacier={cfg_glacier.get('name', '?')}, "
                          f"e.g. glacier.{missing[0]}=... on the command line.")
    options = _plain(cfg_glacier)
    name = options.pop("name")
    return domains.build_domain(name, **options)


def build_physics(cfg_physics, domain: domains.Domain) -> dict[str, float]:
    """The domain's physical defaults with the config's non-null values (validated)."""
    from .simulation import resolve_physics  # imports the laws (and flax): only when running

    return resolve_physics(domain, _plain(cfg_physics))


@dataclass(frozen=True)
class RunSettings:
    """Everything ``simulation.run`` needs besides the domain and the physics."""

    t_end: float
    save_every: float | None
    times: tuple[float, ...]
    stepping: slv.Stepping
    dtype: str
    area_threshold: float


def build_run(cfg_solver, domain: domains.Domain) -> RunSettings:
    """Solver settings with the domain's defaults for the null keys, validated."""
    s = _plain(cfg_solver)
    defaults = domain.solver

    def pick(key):
        return s[key] if s.get(key) is not None else defaults.get(key)

    t_end, save_every, max_dt = pick("t_end"), pick("save_every"), pick("max_dt")
    if t_end is None:
        raise ConfigError(f"glacier={domain.name} has no default duration: set solver.t_end "
                          "(simulated years), e.g. solver.t_end=100.")
    if not (t_end > 0 and math.isfinite(t_end)):
        raise ConfigError(f"solver.t_end={t_end:g} must be a positive number of simulated "
                          "years, e.g. solver.t_end=100.")
    if save_every is not None and not (save_every > 0 and math.isfinite(save_every)):
        raise ConfigError(f"solver.save_every={save_every:g} must be a positive number of "
                          "years; a value >= solver.t_end saves only the first and last "
                          "states, null takes the glacier's default.")
    try:
        stepping = slv.Stepping(cfl=float(s["cfl"]), max_dt=float(max_dt if max_dt is not None
                                                                   else 1.0),
                                max_steps=int(s["max_steps"]))
    except ValueError as e:
        raise ConfigError(f"invalid solver settings: {e} Set solver.cfl in (0, 0.25], "
                          "solver.max_dt > 0 and solver.max_steps >= 1.") from e
    times = slv.save_times(float(t_end), None if save_every is None else float(save_every))
    if s["area_threshold"] < 0:
        raise ConfigError(f"solver.area_threshold={s['area_threshold']:g} must be >= 0 [m].")
    return RunSettings(t_end=float(t_end), save_every=save_every, times=times,
                       stepping=stepping, dtype=s["dtype"],
                       area_threshold=float(s["area_threshold"]))


def resolved_config(cfg: DictConfig, physics: dict[str, float], run: RunSettings) -> str:
    """The config as YAML text with the domain defaults that were used in place of the nulls."""
    out = OmegaConf.create(_plain(cfg))
    for key in out.physics:
        if out.physics[key] is None and key in physics:
            out.physics[key] = float(physics[key])
    out.solver.t_end = run.t_end
    out.solver.save_every = None if run.save_every is None else float(run.save_every)
    out.solver.max_dt = run.stepping.max_dt
    return OmegaConf.to_yaml(out)


# --------------------------------------------------------------------------------------------
# glacier-train: checking values, and config -> law, experiment, trainer settings.

TRAIN_SOLVER_DEFAULTS = {"cfl": 0.124, "max_dt": 1.0}
"""Stepping of ``glacier-train`` where ``solver.*`` is null (the twin experiment's)."""


def check_train(cfg: DictConfig) -> str | None:
    """None when the values of a (typed) ``glacier-train`` config make sense, else a
    one-paragraph explanation of the first bad one and how to fix it."""
    c = _plain(cfg)
    law, net, opt, ex = c["law"], c["network"], c["optimizer"], c["experiment"]
    tr, sol = c["train"], c["solver"]
    if law["name"] == "cuffey_paterson":
        return ("law=cuffey_paterson has nothing to train: Cuffey & Paterson's A(T) is a fixed "
                "table. Choose a law with parameters, e.g. law=nn_A_of_T (a network A(T)), "
                "law=constant_A or law=nn_diffusivity; the twin experiment already uses "
                "cuffey_paterson as the true law.")

    def positive(key, value, example):
        if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
            return f"{key}={value} must be a positive number, e.g. {key}={example}."
        return None

    checks = [positive("optimizer.lr", opt["lr"], 0.02)]
    if not 0 < opt["decay"] <= 1:
        checks.append(f"optimizer.decay={opt['decay']} must be in (0, 1]: the final learning "
                      "rate as a fraction of optimizer.lr, e.g. optimizer.decay=0.1.")
    if opt["lbfgs_steps"] < 0:
        checks.append(f"optimizer.lbfgs_steps={opt['lbfgs_steps']} must be >= 0 (0: Adam only).")
    if opt["clip_norm"] is not None:
        checks.append(positive("optimizer.clip_norm", opt["clip_norm"], 1.0))
    if c["loss"].get("normalise", "sensitivity") not in ("sensitivity", "thickness"):
        checks.append(f"loss.normalise={c['loss']['normalise']!r} must be sensitivity or "
                      "thickness.")
    if not c["loss"].get("velocity", 0.0) >= 0:
        checks.append(f"loss.velocity={c['loss']['velocity']} must be >= 0.")
    if not c["loss"]["l2"] >= 0:
        checks.append(f"loss.l2={c['loss']['l2']} must be >= 0, e.g. loss.l2=0 (none).")
    if not net["hidden"] or any(h < 1 for h in net["hidden"]):
        checks.append(f"network.hidden={net['hidden']} must list positive layer widths, "
                      "e.g. network.hidden=[16,16].")
    if "A" in law:
        checks.append(positive("law.A", law["A"], 7.57e-17))
    for key in ("T_scale", "H_scale", "slope_scale"):
        if key in law:
            checks.append(positive(f"law.{key}", law[key], getattr(
                LAW_SCHEMAS[law["name"]], key)))
    lo, hi = law.get("A_min"), law.get("A_max")
    for key, value in (("A_min", lo), ("A_max", hi)):
        if value is not None:
            checks.append(positive(f"law.{key}", value, "null"))
    if lo is not None and hi is not None and not lo < hi:
        checks.append(f"law.A_min={lo} must be below law.A_max={hi}.")
    if tr["epochs"] < 0 or tr["epochs"] + opt["lbfgs_steps"] < 1:
        checks.append(f"train.epochs={tr['epochs']} with optimizer.lbfgs_steps="
                      f"{opt['lbfgs_steps']}: there must be at least one epoch in all, e.g. "
                      "train.epochs=100.")
    if tr["checkpoint_every"] < 1:
        checks.append(f"train.checkpoint_every={tr['checkpoint_every']} must be >= 1 (epochs).")
    if tr["keep_checkpoints"] < 1:
        checks.append(f"train.keep_checkpoints={tr['keep_checkpoints']} must be >= 1.")
    if tr["devices"] < 0:
        checks.append(f"train.devices={tr['devices']} must be >= 0 (0: all available).")
    if tr["stop_after"] is not None and tr["stop_after"] < 1:
        checks.append(f"train.stop_after={tr['stop_after']} must be >= 1 or null.")
    if ex["name"] == "twin_A_of_T":
        for key, example in (("dx", 200.0), ("years", 15.0), ("obs_every", 1.0),
                             ("spinup_years", 150.0)):
            checks.append(positive(f"experiment.{key}", ex[key], example))
        if ex["n_valleys"] < 0 or ex["n_valleys"] + len(ex["real"]) < 1:
            checks.append(f"experiment.n_valleys={ex['n_valleys']} with experiment.real="
                          f"{ex['real']}: the experiment needs at least one glacier, e.g. "
                          "experiment.n_valleys=8.")
        unknown = [r for r in ex["real"] if r not in REAL_TWIN_GLACIERS]
        if unknown:
            checks.append(f"experiment.real={ex['real']}: {', '.join(map(repr, unknown))} is "
                          f"not a bundled glacier. Valid: {', '.join(REAL_TWIN_GLACIERS)}; "
                          "e.g. experiment.real=[hintereisferner] or experiment.real=[].")
        if not ex["T_min"] <= ex["T_max"]:
            checks.append(f"experiment.T_min={ex['T_min']} must not exceed experiment.T_max="
                          f"{ex['T_max']}.")
        if not ex["noise"] >= 0:
            checks.append(f"experiment.noise={ex['noise']} must be >= 0 [m].")
        if not 0 < ex["obs_fraction"] <= 1:
            checks.append(f"experiment.obs_fraction={ex['obs_fraction']} must be in (0, 1].")
        if not ex.get("velocity_noise", 0.0) >= 0:
            checks.append(f"experiment.velocity_noise={ex['velocity_noise']} must be >= 0.")
        if c["loss"].get("velocity", 0.0) and not ex.get("velocity_obs", False):
            checks.append(f"loss.velocity={c['loss']['velocity']} needs speed observations: "
                          "add experiment.velocity_obs=true.")
    for key in ("t_end", "save_every"):
        if sol[key] is not None:
            checks.append(f"solver.{key}={sol[key]} does not apply to glacier-train: the "
                          "experiment sets the simulated period (experiment.years, "
                          "experiment.obs_every). Remove the override.")
    if not 0 < sol["cfl"] <= 0.25:
        checks.append(f"solver.cfl={sol['cfl']} must be in (0, 0.25], e.g. solver.cfl=0.124.")
    if sol["max_dt"] is not None:
        checks.append(positive("solver.max_dt", sol["max_dt"], 1.0))
    return next((m for m in checks if m), None)


def typed_checked(cfg: DictConfig, primary: str) -> DictConfig:
    """A ``glacier-train`` / ``glacier-invert`` config merged into its schemas and its values
    checked (``check_train`` / ``check_invert``); ``ConfigError`` otherwise."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = typed(cfg, primary)
    except OmegaConfBaseException as e:  # e.g. a hand-edited config file
        raise ConfigError(explain(e, [], primary=primary,
                                  command=f"glacier-{primary}")) from e
    problem = {"train": check_train, "invert": check_invert}[primary](cfg)
    if problem:
        raise ConfigError(problem)
    return cfg


def train_stepping(cfg_solver) -> dict[str, float]:
    """cfl and max_dt of a training run (null -> ``TRAIN_SOLVER_DEFAULTS``)."""
    s = _plain(cfg_solver)
    return {k: float(s[k]) if s.get(k) is not None else v
            for k, v in TRAIN_SOLVER_DEFAULTS.items()}


def law_bounds(cfg_law) -> tuple[float, float]:
    """(A_min, A_max) [Pa^-3 a^-1] of a learned law.

    null -> ``laws.PRIOR_BOUNDS``: A from 3.5e-26 to 3.5e-24 s^-1 Pa^-3 (it
    brackets Cuffey & Paterson's A from -30 to 0 degC), and a fresh network starts at the prior
    3.5e-25 s^-1 Pa^-3 (the geometric middle).
    """
    from .laws import PRIOR_BOUNDS as defaults
    lo, hi = cfg_law.get("A_min"), cfg_law.get("A_max")
    return (defaults[0] if lo is None else float(lo), defaults[1] if hi is None else float(hi))


def build_law(cfg: DictConfig, *, dtype: str = "float64"):
    """The initial law of ``cfg.law`` (network initialised from ``cfg.seed``)."""
    import jax.numpy as jnp

    from . import laws

    law = _plain(cfg.law)
    net = _plain(cfg.network)
    name = law["name"]
    param_dtype = jnp.float64 if dtype == "float64" else jnp.float32
    try:
        if name == "constant_A":
            return laws.ConstantA(log_A=jnp.log(jnp.asarray(law["A"], param_dtype)))
        if name == "nn_A_of_T":
            return laws.NeuralAofT.create(
                hidden=tuple(net["hidden"]), seed=int(cfg.seed), activation=net["activation"],
                T_mean=law["T_mean"], T_scale=law["T_scale"], bounds=law_bounds(law),
                param_dtype=param_dtype)
        if name == "nn_diffusivity":
            return laws.NeuralDiffusivity.create(
                hidden=tuple(net["hidden"]), seed=int(cfg.seed), activation=net["activation"],
                scales=(law["H_scale"], law["slope_scale"], law["T_mean"], law["T_scale"]),
                bounds=law_bounds(law), param_dtype=param_dtype)
    except ValueError as e:
        raise ConfigError(f"invalid law settings for law={name}: {e}") from e
    raise ConfigError(f"law={name} has nothing to train; choose nn_A_of_T, constant_A or "
                      "nn_diffusivity.")


def twin_options(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments of ``experiments.twin_A_of_T`` from ``cfg`` (besides devices)."""
    ex = _plain(cfg.experiment)
    ex.pop("name")
    ex["real"] = tuple(ex["real"])
    return dict(**ex, seed=int(cfg.seed), dtype=_plain(cfg.solver)["dtype"],
                **train_stepping(cfg.solver))


def resolved_train_config(cfg: DictConfig) -> str:
    """The training config as YAML with the defaults used in place of the nulls."""
    out = OmegaConf.create(_plain(cfg))
    out.solver.cfl, out.solver.max_dt = train_stepping(cfg.solver).values()
    if "A_min" in out.law:
        out.law.A_min, out.law.A_max = law_bounds(out.law)
    return OmegaConf.to_yaml(out)


def training_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint's run: everything but ``train``
    (epochs may be raised, checkpoint_every, devices, stop_after and resume may change)."""
    out = _plain(cfg)
    out.pop("train", None)
    return out


# --------------------------------------------------------------------------------------------
# glacier-invert: checking values, and config -> inversion options.


def check_invert(cfg: DictConfig) -> str | None:
    """None when the ``invert`` values of a (typed) ``glacier-invert`` config make sense, else
    one paragraph on the first bad one and how to fix it."""
    try:
        invert_options(cfg)
    except ConfigError as e:
        return str(e)
    inv = _plain(cfg.invert)
    if inv["A"] == "law" and cfg.law.name == "cuffey_paterson":
        return ("invert.A=law with law=cuffey_paterson: that law has no parameters to invert. "
                "Choose law=nn_A_of_T, law=constant_A or law=nn_diffusivity, or "
                "invert.A=scalar.")
    if inv["cv_folds"] < 0 or inv["cv_folds"] == 1:
        return (f"invert.cv_folds={inv['cv_folds']}: use 0 (no cross-validation) or at least "
                "2 folds, e.g. invert.cv_folds=5.")
    if not inv["cv_block"] > 0:
        return f"invert.cv_block={inv['cv_block']} must be a positive length [m], e.g. 500."
    if not 0 < inv["cfl"] <= 0.25:
        return f"invert.cfl={inv['cfl']} must be in (0, 0.25], e.g. invert.cfl=0.124."
    return None


def invert_options(cfg: DictConfig):
    """``glacier.invert.InvertOptions`` of ``cfg.invert`` (ConfigError on a bad value)."""
    from .invert import InvertOptions

    inv = _plain(cfg.invert)
    for key in ("cv_folds", "cv_block"):
        inv.pop(key)
    try:
        return InvertOptions(**inv)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid invert settings: {e}") from e


# --------------------------------------------------------------------------------------------
# Checking a command line before anything runs, and saying how to fix it.


def check_overrides(overrides: list[str], *, primary: str = "simulate",
                    config_dir: str | None = None, config_name: str | None = None,
                    command: str = "glacier-simulate") -> str | None:
    """Compose the config of ``overrides`` and return None, or a one-paragraph explanation of
    what is wrong (unknown key, bad type, unknown group option, missing value) and how to fix it.

    Args:
        overrides: the command line's overrides, without Hydra's flags and ``hydra.*`` ones.
        primary: the console script's primary config (and schema).
        config_dir: an absolute directory to compose from instead of the packaged configs
            (``--config-path``, e.g. a run directory's ``.hydra``).
        config_name: the primary config's name there (``--config-name``).
        command: the console script, for the hints.
    """
    from hydra import compose, initialize_config_dir, initialize_config_module

    init = (initialize_config_module(config_module="glacier.configs", version_base=None)
            if config_dir is None else
            initialize_config_dir(config_dir=config_dir, version_base=None))
    try:
        with init:
            cfg = compose(config_name=config_name or primary, overrides=list(overrides))
        cfg = typed(cfg, primary)
    except ConfigError as e:
        return str(e)
    except Exception as e:  # Hydra and OmegaConf errors: explain them
        return explain(e, overrides, primary=primary, command=command)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        group = key.split(".", 1)[0]
        where = (f" for {group}={cfg[group].name}" if group in SELECTORS[primary] else "")
        return (f"{key} has no value and must be set{where}: add {key}=... to the command line "
                f"({_help_of(key, cfg)}).")
    if primary == "train":
        return check_train(cfg)
    if primary == "invert":
        return check_invert(cfg)
    return None


def explain(exc: BaseException, overrides: list[str], *, primary: str = "simulate",
            command: str = "glacier-simulate") -> str:
    """A one-paragraph explanation of a Hydra / OmegaConf composition error."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    text = str(exc)
    cause = exc if getattr(exc, "full_key", None) else exc.__cause__
    if isinstance(exc, OverrideParseException):
        bad = _unparsable(overrides) or " ".join(overrides)
        return (f"cannot read the override {bad!r}: {_first_line(text)}. Overrides look like "
                "key=value, group=option or +key=value; quote values with spaces or special "
                "characters, e.g. 'glacier.path=\"my file.nc\"'.")
    if isinstance(exc, MissingConfigException):
        found = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        if found:
            group, option = found.groups()
            valid = group_options(group)
            default = _DEFAULT_OPTIONS.get(group, valid[0] if valid else "")
            return (f"{group}={option}: there is no option {option!r} in the config group "
                    f"{group}. Valid options: {', '.join(valid)}. Choose one of them, e.g. "
                    f"{group}={default}.")
        return _first_line(text)
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key:
        parent, _, key = cause.full_key.rpartition(".")
        schema = _schema_of(parent, cause.object_type, overrides, primary)
        valid = [f.name for f in dataclasses.fields(schema)] if schema else []
        where = _where(parent, overrides, primary)
        said = _override_of(cause.full_key, overrides) or cause.full_key
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"Did you mean {_join(parent, close[0])}? " if close else ""
        return (f"{said}: {where} has no key {key!r}. Valid keys of {where}: "
                f"{', '.join(valid) or '(none)'}. {hint}Fix the spelling; `{command} --cfg job` "
                "prints the whole config with its current values.")
    if isinstance(cause, ValidationError) and cause.full_key:
        full_key = cause.full_key.split("[", 1)[0]  # network.hidden[0] -> network.hidden
        parent, _, key = full_key.rpartition(".")
        schema = _schema_of(parent, cause.object_type, overrides, primary)
        said = _override_of(full_key, overrides) or cause.full_key
        msg = f"{said}: {_first_line(str(cause))}."
        if schema is not None and key in {f.name for f in dataclasses.fields(schema)}:
            f = {f.name: f for f in dataclasses.fields(schema)}[key]
            kind = _describe_type(typing.get_type_hints(schema)[key])
            msg += f" {full_key} is {kind} ({f.metadata.get('help', '')})."
            if f.default is None:
                msg += (" Give a value, or null for the domain's default." if primary == "simulate"
                        else " Give a value, or null for the default.")
            elif f.default is not dataclasses.MISSING and f.default is not MISSING:
                msg += f" For example {full_key}={_yaml(f.default)} (the default)."
        return msg
    detail = _first_line(str(cause)) if cause is not None else ""
    return (f"{_first_line(text)}{': ' + detail if detail else ''}. Check the overrides "
            f"{' '.join(overrides)}; `{command} --help` lists the config groups and "
            f"`{command} --cfg job` prints the config.")


_DEFAULT_OPTIONS = {"glacier": "synthetic_valley", "physics": "default", "solver": "default",
                    "law": "nn_A_of_T", "network": "default", "optimizer": "default",
                    "loss": "default", "experiment": "twin_A_of_T"}


def group_options(group: str) -> list[str]:
    """The options of a packaged config group (the YAML files of ``configs/<group>/``)."""
    import importlib.resources

    folder = importlib.resources.files("glacier.configs") / group
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].rstrip(".") if text.strip() else ""


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _key_of(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def _override_of(full_key: str, overrides: list[str]) -> str | None:
    for o in reversed(overrides):
        if _key_of(o) == full_key:
            return o
    return None


def _unparsable(overrides: list[str]) -> str | None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except Exception:
            return o
    return None


def _group_option(group: str, overrides: list[str]) -> str:
    """The option of ``group`` chosen on the command line, else its default."""
    for o in reversed(overrides):
        if _key_of(o) == group and "=" in o:
            return o.split("=", 1)[1]
    return _DEFAULT_OPTIONS.get(group, "default")


def _schema_of(parent: str, object_type, overrides: list[str], primary: str) -> type | None:
    if isinstance(object_type, type) and dataclasses.is_dataclass(object_type):
        return object_type
    if parent == "":
        return PRIMARY_SCHEMAS.get(primary)
    selectors = SELECTORS.get(primary, {})
    if parent in selectors:
        return selectors[parent].get(_group_option(parent, overrides))
    top = PRIMARY_SCHEMAS.get(primary)
    if top is not None and "." not in parent:  # a plain node of the primary schema
        hints = typing.get_type_hints(top)
        if dataclasses.is_dataclass(hints.get(parent)):
            return hints[parent]
    return _all_groups().get(parent, {}).get("default")


def _where(parent: str, overrides: list[str], primary: str = "simulate") -> str:
    if parent == "":
        return "the top level"
    if parent in SELECTORS.get(primary, {}):
        return f"{parent}={_group_option(parent, overrides)}"
    return parent


def _help_of(full_key: str, cfg) -> str:
    parent, _, key = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    schema = OmegaConf.get_type(node)
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        return field_help(schema).get(key, "")
    return ""


def _describe_type(tp) -> str:
    args = typing.get_args(tp)
    nullable = type(None) in args
    if args and typing.get_origin(tp) is not list:
        tp = next(a for a in args if a is not type(None))
    if typing.get_origin(tp) is list:
        inner = _describe_type(typing.get_args(tp)[0]) if typing.get_args(tp) else "a value"
        kind = f"a list (each {inner})"
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        kind = "one of " + ", ".join(m.value for m in tp)
    else:
        kind = {float: "a number", int: "an integer", str: "a string",
                bool: "true or false"}.get(tp, str(tp))
    return kind + (" or null" if nullable else "")


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)
