"""Error prose: ``explain`` turns a Hydra or OmegaConf composition error into one paragraph:
what is wrong, the valid keys or options, how to fix it."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import typing

from omegaconf import MISSING, OmegaConf

from .schemas import DEFAULT_OPTIONS, PRIMARY_SCHEMAS, SELECTORS, all_groups, field_help


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
            default = DEFAULT_OPTIONS.get(group, valid[0] if valid else "")
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
    return DEFAULT_OPTIONS.get(group, "default")


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
    return all_groups().get(parent, {}).get("default")


def _where(parent: str, overrides: list[str], primary: str = "simulate") -> str:
    if parent == "":
        return "the top level"
    if parent in SELECTORS.get(primary, {}):
        return f"{parent}={_group_option(parent, overrides)}"
    return parent


def help_of(full_key: str, cfg) -> str:
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
