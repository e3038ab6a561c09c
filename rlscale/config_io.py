"""Loading run configs: a YAML file plus `key.sub=value` overrides -> a validated `RunConfig`
(`rlscale.config`), errors as one line per problem naming the file and the dotted key; saving
one; its keys as rows (`rlscale config show`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rlscale.config import ConfigError, RunConfig


def config_rows(cfg: BaseModel, prefix: str = "") -> list[tuple[str, Any, Any, str]]:
    """(dotted key, value, default, description) for every leaf key of the config, in schema order."""
    rows = []
    for key, field in type(cfg).model_fields.items():
        value = getattr(cfg, key)
        if isinstance(value, BaseModel):
            rows += config_rows(value, f"{prefix}{key}.")
            continue
        default = field.default_factory() if field.default_factory is not None else field.default
        if isinstance(value, tuple):
            value, default = list(value), list(default)
        rows.append((f"{prefix}{key}", value, default, field.description or ""))
    return rows


# where a run lives and the Ray cluster it attached to: they differ between runs of one recipe
# (another sweep invocation, a moved run dir) without changing what the run computes
RUN_LOCAL_KEYS = ("name", "output_dir", "ray.address")


def flatten_dotted(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: a nested mapping's leaves under their dotted keys."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part == "env":  # `env: arithmetic` shorthand
            child = {"name": child}
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        parsed.append((key.strip(), yaml.safe_load(raw) if raw else None))
    return parsed


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        lines.append(f"{source}: {loc + ': ' if loc else ''}{msg}")
    return "\n".join(lines)


def build_config(data: dict, *, source: str = "<config>", overrides: list[str] = ()) -> RunConfig:
    tree = copy.deepcopy(data)
    parsed = parse_overrides(list(overrides))
    new_env = dict(parsed).get("env.name")
    env = tree.get("env")
    if new_env is not None and isinstance(env, dict) and env.get("name") != new_env:
        env.pop("kwargs", None)  # the file's kwargs belong to the environment being replaced
    for key, value in parsed:
        _set_dotted(tree, key, value)
    return validate_model(RunConfig, tree, source)


def read_yaml_mapping(path: Path, what: str = "config file") -> dict:
    """A YAML file whose top level is a mapping, or one ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    return data


def validate_model(model: type[BaseModel], data: dict, source: str):
    """`model` validated from `data`, or one ConfigError line per problem, naming source and key."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    path = Path(path)
    return build_config(read_yaml_mapping(path), source=str(path), overrides=overrides)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
