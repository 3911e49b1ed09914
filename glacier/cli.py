"""Console scripts: ``glacier-simulate`` (and ``glacier-train``, ``glacier-invert`` to come).

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
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from . import config
from .errors import ConfigError, GlacierError

_PLANNED = {
    "glacier-train": "adjoint-based training of learned laws (UDE)",
    "glacier-invert": "inversion against observed ice thickness",
}


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


# --------------------------------------------------------------------------------------------
# glacier-simulate


def simulate(argv: list[str] | None = None) -> None:
    """Console script ``glacier-simulate``: forward simulation of one glacier."""
    args = _absolute_config_path(list(sys.argv[1:] if argv is None else argv))
    problem = check_command_line(args, primary="simulate", command="glacier-simulate")
    if problem:
        _fail("glacier-simulate", problem, 2)
    sys.argv = [sys.argv[0], *_with_job_name(args, "simulate")]
    _simulate_app()


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
# Planned commands


def _planned(command: str) -> None:
    print(f"{command}: not implemented yet: see the issue on {_PLANNED[command]}.",
          file=sys.stderr)
    sys.exit(2)


def train(argv: list[str] | None = None) -> None:
    """Console script ``glacier-train`` (not implemented yet)."""
    _planned("glacier-train")


def invert(argv: list[str] | None = None) -> None:
    """Console script ``glacier-invert`` (not implemented yet)."""
    _planned("glacier-invert")


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
