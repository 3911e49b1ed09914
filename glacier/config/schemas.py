"""The config schemas of the console scripts: what Hydra's ConfigStore registers.

Every config group of ``configs/`` is backed by a dataclass registered as ``<option>_schema``
(e.g. ``glacier/halfar_schema``); each YAML option lists its schema first in its defaults list
and holds nothing else but its ``name``. A misspelt key (``solver.cfll=0.1``) or a value of the
wrong type (``solver.cfl=abc``) therefore fails when Hydra composes the config, before anything
runs. Defaults and help text exist once:

- ``glacier=NAME``: the library's own domain options (``glacier.domains``: e.g.
  ``domains.synthetic.SyntheticValleyOptions``), with a ``name`` key in front;
- ``experiment=twin_A_of_T``: ``experiments.TwinAofTOptions`` (``twin_diffusivity``:
  ``diffusivity_twin.TwinDiffusivityOptions``, ``files``: ``glacier_set.FilesOptions``); ``invert``:
  ``invert.InvertOptions``;
- the groups that only exist for the command line (``physics`` overrides where null means the
  domain's value, ``solver``, ``law``, ``network``, ``optimizer``, ``loss``, ``train``): here.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .. import domains
from ..diffusivity_twin import TwinDiffusivityOptions
from ..experiments import TwinAofTOptions
from ..glacier_set import FilesOptions
from ..invert import InvertOptions
from ..options import field_help
from ..options import option as _opt

__all__ = ["EXPERIMENT_SCHEMAS", "GLACIER_SCHEMAS", "GROUP_SCHEMAS", "LAW_SCHEMAS",
           "PRIMARY_SCHEMAS", "SELECTORS", "TRAIN_GROUP_SCHEMAS", "field_help", "register"]


def schema_of(cls: type, name: tuple[str, str] | None = None,
              exclude: tuple[str, ...] = ()) -> type:
    """A (mutable: OmegaConf makes frozen dataclasses read-only) schema with the fields, types,
    defaults and help of the library's option dataclass ``cls``; with ``name=(option, what)``
    a ``name`` key in front, the group option it stands for. Fields in ``exclude`` are set
    from another node of the config (``solver.scheme`` of ``glacier-invert``)."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any, Any]] = []
    if name is not None:
        option, what = name
        fields.append(("name", str, dataclasses.field(
            default=option, metadata={"help": f"{what} name (the {what}= option)"})))
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        kwargs: dict[str, Any] = {"metadata": f.metadata}
        if f.metadata.get("required"):
            kwargs["default"] = MISSING
        elif f.default_factory is not dataclasses.MISSING:
            kwargs["default_factory"] = f.default_factory
        else:
            kwargs["default"] = f.default
        fields.append((f.name, hints[f.name], dataclasses.field(**kwargs)))
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields,
                                      namespace={"__doc__": cls.__doc__,
                                                 "library_class": cls})


GLACIER_SCHEMAS: dict[str, type] = {name: schema_of(domains.options_class(name), (name, "domain"))
                                    for name in domains.names()}
"""``glacier=`` option -> its schema (the domain's options with its name)."""


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


class SchemeChoice(enum.Enum):
    """``solver.scheme``: the time-stepping scheme (``glacier.schemes.SCHEMES``)."""

    explicit = "explicit"
    implicit = "implicit"
    rkl2 = "rkl2"


SCHEME_HELP = ("time stepping: explicit (adaptive forward Euler, cfl and max_dt), rkl2 "
               "(Runge-Kutta-Legendre super-steps of at most max_dt) or implicit (backward "
               "Euler with Newton-Krylov, step solver.dt)")
DT_HELP = "step of the implicit scheme [a] (halved where Newton fails); null = max(1, max_dt)"


@dataclass
class SolverConfig:
    """``solver``: time span, saving and stepping; null means the domain's default."""

    t_end: float | None = _opt(None, "simulated years from the start")
    save_every: float | None = _opt(None, "years between saved states (the last one is saved)")
    scheme: SchemeChoice = _opt(SchemeChoice.explicit, SCHEME_HELP)
    dt: float | None = _opt(None, DT_HELP)
    cfl: float = _opt(0.124, "stability factor: dt = cfl dx^2 / max(D), in (0, 0.25]")
    max_dt: float | None = _opt(None, "largest time step of the explicit scheme [a] (of rkl2: "
                                      "its super-step, the accuracy control)")
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


@dataclass
class NeuralScaledDiffusivityLawConfig:
    """``law=nn_D``: the diffusivity as a factor F(H, |grad S|, T) of Glen's law (n = 3)."""

    name: str = _opt("nn_D", "law name (the law= option)")
    H_scale: float = _opt(100.0, "thickness of the input ln(H / H_scale) [m] (> 0)")
    slope_scale: float = _opt(0.1, "slope of the input ln(|grad S| / slope_scale) [1] (> 0)")
    T_mean: float = _opt(-12.5, "centre of the temperature input [degC]")
    T_scale: float = _opt(12.5, "scale of the temperature input [degC] (> 0)")
    A_ref: float | None = _opt(None, "rate factor of the Glen's law that F multiplies "
                                     "[Pa^-3 a^-1]; null = the best constant A on the "
                                     "training glaciers (fitted first)")
    F_min: float = _opt(0.001, "lower bound of the factor F [1] (> 0, < 1)")
    F_max: float = _opt(1000.0, "upper bound of the factor F [1] (> 1)")


LAW_SCHEMAS: dict[str, type] = {
    "constant_A": ConstantALawConfig,
    "cuffey_paterson": CuffeyPatersonLawConfig,
    "nn_A_of_T": NeuralAofTLawConfig,
    "nn_diffusivity": NeuralDiffusivityLawConfig,
    "nn_D": NeuralScaledDiffusivityLawConfig,
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


EXPERIMENT_SCHEMAS: dict[str, type] = {
    "twin_A_of_T": schema_of(TwinAofTOptions, ("twin_A_of_T", "experiment")),
    "twin_diffusivity": schema_of(TwinDiffusivityOptions, ("twin_diffusivity", "experiment")),
    "files": schema_of(FilesOptions, ("files", "experiment"))}
"""``experiment=`` option -> its schema."""


class BatchUpdate(enum.Enum):
    """``train.batch_update``: how the mini-batches of ``train.batch_size`` update the law."""

    step = "step"
    accumulate = "accumulate"


class OnNonFinite(enum.Enum):
    """``train.on_nonfinite``: what a training epoch whose loss or update is not finite does."""

    stop = "stop"
    skip = "skip"
    rollback = "rollback"


@dataclass
class DistributedConfig:
    """``train.distributed``: one training over several processes (``glacier.distributed``)."""

    enabled: bool = _opt(False, "start JAX's distributed runtime: the glaciers are split "
                                "over the devices of all processes")
    coordinator: str | None = _opt(None, "HOST:PORT of process 0; null (with the next two): "
                                         "from the SLURM job step")
    num_processes: int | None = _opt(None, "number of processes (null: from SLURM)")
    process_id: int | None = _opt(None, "rank of this process, 0 .. num_processes-1 (null: "
                                        "from SLURM)")
    timeout_s: int = _opt(300, "how long to wait for all processes to join [s]")


@dataclass
class TrainLoopConfig:
    """``train``: epochs, checkpoints, resuming, devices."""

    epochs: int = _opt(20, "Adam epochs (one step on all glaciers each, or one per "
                           "mini-batch: train.batch_size)")
    checkpoint_every: int = _opt(10, "epochs between checkpoints (also at the end and on "
                                     "Ctrl-C / SIGTERM)")
    keep_checkpoints: int = _opt(3, "number of most recent checkpoints kept")
    resume: bool = _opt(False, "continue from the latest checkpoint of hydra.run.dir")
    devices: int = _opt(1, "devices to split the glaciers across; 0 = all available")
    stop_after: int | None = _opt(None, "stop (as on Ctrl-C, but exit 0) after this epoch; "
                                        "for tests of resuming")
    on_nonfinite: OnNonFinite = _opt(OnNonFinite.stop, "a non-finite loss or update: stop "
                                     "(keep the last good epoch), skip (discard the update, "
                                     "go on) or rollback (also undo the update before it); at "
                                     "most 5 epochs in a row")
    batch_size: int | None = _opt(None, "glaciers per mini-batch, grouped by grid size "
                                        "(glacier.minibatch); null = all in one batch")
    batch_update: BatchUpdate = _opt(BatchUpdate.step, "step: one Adam step per mini-batch; "
                                     "accumulate: their gradients summed into one step per "
                                     "epoch (the full batch's, in the memory of one group)")
    distributed: DistributedConfig = _opt(DistributedConfig(), "several processes "
                                          "(jax.distributed): enabled, coordinator, "
                                          "num_processes, process_id, timeout_s")


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


InvertSchema = schema_of(InvertOptions, exclude=("scheme", "dt"))
"""The ``invert`` node: ``invert.InvertOptions`` (its scheme and dt: the ``solver`` node)."""


@dataclass
class InvertSolverConfig:
    """``solver`` of ``glacier-invert``: the scheme of the relaxation run (the explicit one
    steps with invert.cfl and invert.max_dt)."""

    scheme: SchemeChoice = _opt(SchemeChoice.explicit, SCHEME_HELP)
    dt: float = _opt(1.0, "step of the implicit scheme [a] (halved where Newton fails)")


@dataclass
class InvertConfig:
    """The primary config of ``glacier-invert`` (``configs/invert.yaml``)."""

    glacier: Any = _opt(MISSING, "the glacier: glacier=NAME selects a domain with a mask and "
                                 "thickness observations")
    physics: PhysicsConfig = _opt(PhysicsConfig(), "Glen's-law parameters (A: the prior)")
    law: Any = _opt(MISSING, "the learned law of invert.A=law: law=NAME")
    network: NetworkConfig = _opt(NetworkConfig(), "network of the neural laws")
    invert: InvertSchema = _opt(InvertSchema(), "controls, cost, optimiser, folds")  # type: ignore[valid-type]
    solver: InvertSolverConfig = _opt(InvertSolverConfig(), "scheme of the relaxation run")
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
Their schema depends on the option, so ``build.typed`` looks it up from ``<group>.name``."""

DEFAULT_OPTIONS = {"glacier": "synthetic_valley", "physics": "default", "solver": "default",
                   "law": "nn_A_of_T", "network": "default", "optimizer": "default",
                   "loss": "default", "experiment": "twin_A_of_T"}
"""The option of each group when the command line names none (for the hints)."""


def all_groups() -> dict[str, dict[str, type]]:
    return {**GROUP_SCHEMAS, **TRAIN_GROUP_SCHEMAS}


def register() -> None:
    """Register every schema with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for group, schemas in all_groups().items():
        for option, schema in schemas.items():
            cs.store(group=group, name=f"{option}_schema", node=schema)
    for name, schema in PRIMARY_SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=schema)


register()
