"""Console scripts: ``glacier-simulate``, ``glacier-train`` and ``glacier-invert``.

Each script is a thin wrapper around a Hydra app:

1. The command line is checked first (``glacier.config.check_overrides``): an unknown key, a
   value of the wrong type, an unknown group option or a bad value is reported as one
   paragraph (what, the valid keys or options, how to fix it) with exit status 2, before Hydra
   creates a run directory. With ``-m`` every value of a sweep is checked; command lines with
   Hydra's other flags (``--help``, ``--cfg``, ``--info``, ...) go to Hydra unchecked;
   ``--config-path``/``--config-name`` are checked against that config (a relative
   ``--config-path`` is taken from the current directory). A ``hydra.run.dir`` that cannot be
   created is refused here too; a refused run (exit 2) puts back the ``.hydra/`` record of an
   existing run directory that Hydra rewrote.
2. The ``@hydra.main`` task types and checks the config again (a run directory's config may
   have been edited), builds the application's job (``glacier.config.build``) and runs it in
   Hydra's run directory (``glacier.apps``). Errors of the package (``GlacierError``) are
   printed as one paragraph and end the process with their exit status (2: config or input,
   3: numerics); the application's own exit status ends it otherwise.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import config
from .config import build, command_line
from .errors import GlacierError


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


_MULTIRUN = ("-m", "--multirun")


def _split(args: list[str]) -> tuple[list[str], dict[str, str], bool]:
    """(overrides, {"path"/"name": value, "multirun": ""}, whether other Hydra flags are
    present)."""
    overrides: list[str] = []
    flags: dict[str, str] = {}
    other = False
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, value = arg.partition("=")
        if arg in _MULTIRUN:
            flags["multirun"] = ""
        elif key in _CONFIG_FLAGS:
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
    if "multirun" not in flags:
        return config.check_overrides(overrides, primary=primary, config_dir=config_dir,
                                      config_name=flags.get("name"), command=command)
    # A sweep (key=a,b,c): each of its values, with the other overrides at their first value.
    # Hydra's sweep functions (range(...), choice(...), glob(...)) are left to Hydra.
    sweeps = [command_line.sweep_values(o) for o in overrides]
    overrides = [o for o, v in zip(overrides, sweeps, strict=True) if v is not None]
    sweeps = [v for v in sweeps if v is not None]
    base = [v[0] for v in sweeps]
    for i, values in enumerate(sweeps):
        for value in values[1:] if i else values:
            problem = config.check_overrides([*base[:i], value, *base[i + 1:]],
                                             primary=primary, config_dir=config_dir,
                                             config_name=flags.get("name"), command=command)
            if problem:
                return problem + " (in a -m sweep, every value is checked)"
    return None



def _console(argv: list[str] | None, primary: str, app) -> None:
    """Run console script ``glacier-<primary>``: check the command line (exit 2 with one
    paragraph when it is wrong), then hand it to the Hydra ``app``."""
    command = f"glacier-{primary}"
    args = _absolute_config_path(list(sys.argv[1:] if argv is None else argv))
    problem = (check_command_line(args, primary=primary, command=command)
               or command_line.run_dir_problem(args))
    if problem:
        _fail(command, problem, 2)
    sys.argv = [sys.argv[0], *_with_job_name(args, primary)]
    saved = command_line.run_record(args)
    try:
        app()
    except SystemExit as e:
        if e.code == 2 and saved:  # refused (e.g. a resume with other values): undo Hydra's
            for path, data in saved.items():  # rewrite of the run's record
                path.write_bytes(data)
        raise



# --------------------------------------------------------------------------------------------
# The Hydra tasks: config -> job -> application.


def _task(primary: str, cfg: DictConfig) -> None:
    """Run the application of ``glacier-<primary>`` on ``cfg`` in Hydra's run directory and
    exit with its status (errors of the package: one paragraph, their exit status)."""
    from .apps import common

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    with common.job_log():
        _run_task(primary, cfg, out_dir)


def _run_task(primary: str, cfg: DictConfig, out_dir: Path) -> None:
    """``_task`` inside the job log."""
    from .apps import common

    command = f"glacier-{primary}"
    try:
        cfg = config.typed_checked(cfg, primary)
        dtype = config.plain(cfg.solver)["dtype"] if primary == "train" else "float64"
        common.configure_jax(x64=primary != "train" or dtype == "float64")
        code = _APPS[primary](cfg, out_dir)
    except GlacierError as e:
        if e.exit_code == 2:
            command_line.remove_if_only_record(out_dir)
        _fail(command, str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail(command, f"interrupted at once (before the run started, or by a second Ctrl-C); "
                       f"no outputs were written. Checkpoints so far, if any, are in "
                       f"{out_dir / 'checkpoints'}: continue with train.resume=true."
              if primary == "train" else "interrupted; no outputs were written.", 130)
    if code:
        sys.exit(code)


def _simulate(cfg: DictConfig, out_dir: Path) -> int:
    from .apps import simulate

    return simulate.run(build.simulate_job(cfg, tuple(sys.argv)), out_dir)


def _train(cfg: DictConfig, out_dir: Path) -> int:
    from . import distributed
    from .apps import train

    distributed.initialize(build.distributed_settings(cfg.train))  # before any computation
    return train.run(build.train_job(cfg, tuple(sys.argv)), out_dir)


def _invert(cfg: DictConfig, out_dir: Path) -> int:
    from .apps import invert

    return invert.run(build.invert_job(cfg, tuple(sys.argv)), out_dir)


_APPS = {"simulate": _simulate, "train": _train, "invert": _invert}


@hydra.main(version_base=None, config_path="pkg://glacier.configs", config_name="simulate")
def _simulate_app(cfg: DictConfig) -> None:
    _task("simulate", cfg)


@hydra.main(version_base=None, config_path="pkg://glacier.configs", config_name="train")
def _train_app(cfg: DictConfig) -> None:
    _task("train", cfg)


@hydra.main(version_base=None, config_path="pkg://glacier.configs", config_name="invert")
def _invert_app(cfg: DictConfig) -> None:
    _task("invert", cfg)


def simulate(argv: list[str] | None = None) -> None:
    """Console script ``glacier-simulate``: forward simulation of one glacier."""
    _console(argv, "simulate", _simulate_app)


def train(argv: list[str] | None = None) -> None:
    """Console script ``glacier-train``: training of a learned law (UDE) on many glaciers."""
    _console(argv, "train", _train_app)


def invert(argv: list[str] | None = None) -> None:
    """Console script ``glacier-invert``: inversion against observed ice thickness."""
    _console(argv, "invert", _invert_app)


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
