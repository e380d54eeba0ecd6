"""Load YAML config: line numbers for every key, ${ENV} substitution, --set overrides.

Errors come out as ``file:line: key.path: message`` so a user can jump to the spot.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge_runtime.config.schema import Config, variant_tags
from edge_runtime.errors import ConfigError, InputError

KeyPath = tuple[str | int, ...]
VARIANT_TAGS, VARIANT_PARENTS = variant_tags()
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Located:
    """Where a value came from: a file line, or a command-line override."""

    origin: str  # file name or "--set"
    line: int | None

    def prefix(self) -> str:
        return f"{self.origin}:{self.line}" if self.line is not None else self.origin


def _compose(text: str, origin: str) -> tuple[Any, dict[KeyPath, Located]]:
    """Parse YAML keeping the line of every mapping key and sequence item."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError("invalid YAML", problems=[f"{where}: invalid YAML: {problem}"]) from err
    lines: dict[KeyPath, Located] = {}

    def build(node: yaml.Node, path: KeyPath) -> Any:
        lines[path] = Located(origin, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                out[key] = build(value_node, (*path, key))
                lines[(*path, key)] = Located(origin, key_node.start_mark.line + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(node.value)]
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        finally:
            loader.dispose()

    if root is None:
        return {}, lines
    return build(root, ()), lines


def _substitute_env(value: Any, path: KeyPath, lines: dict[KeyPath, Located],
                    env: dict[str, str], problems: list[str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; unset VARs are errors."""
    if isinstance(value, dict):
        return {k: _substitute_env(v, (*path, k), lines, env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, (*path, i), lines, env, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{_where(path, lines)}: {_dotted(path)}: environment variable "
                        f"{name} is not set (export it, or use ${{{name}:-default}})")
        return ""

    return ENV_PATTERN.sub(replace, value)


def _dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _where(path: KeyPath, lines: dict[KeyPath, Located]) -> str:
    """The nearest known location of ``path`` (walking up to its parents)."""
    for cut in range(len(path), -1, -1):
        located = lines.get(path[:cut])
        if located is not None:
            return located.prefix()
    return next(iter(lines.values())).prefix() if lines else "config"


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """``a.b.0.c=value`` -> (("a", "b", 0, "c"), value parsed as a YAML scalar)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("bad --set", problems=[
            f"--set: '{text}': expected dotted.key=value, e.g. --set mqtt.port=1883"])
    path: KeyPath = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def _apply_override(data: dict[str, Any], path: KeyPath, value: Any,
                    lines: dict[KeyPath, Located]) -> None:
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                raise ConfigError("bad --set", problems=[
                    f"--set: {_dotted(path)}: index {part} is out of range "
                    f"(the list has {len(node)} items)"])
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str):
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        else:
            raise ConfigError("bad --set", problems=[
                f"--set: {_dotted(path)}: '{part}' does not fit the config structure"])
    last = path[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):  # noqa: SIM114
        node[last] = value
    elif isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    else:
        raise ConfigError("bad --set", problems=[
            f"--set: {_dotted(path)}: cannot set this key"])
    lines[path] = Located("--set " + _dotted(path), None)


def _format_validation(err: ValidationError, lines: dict[KeyPath, Located]) -> list[str]:
    problems = []
    for item in err.errors(include_url=False):
        # pydantic adds the discriminator value ("camera") as a loc element: drop it so
        # the path matches the YAML keys.
        loc: KeyPath = tuple(p for p in item["loc"] if isinstance(p, int | str))
        path = _strip_variant_tags(loc)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the config reference in README.md)"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{_where(path, lines)}: {_dotted(path)}: {message}")
    return problems


def _strip_variant_tags(loc: KeyPath) -> KeyPath:
    """Drop the tag pydantic inserts after a discriminated union (``source.camera.fps``)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if i > 0 and part in VARIANT_TAGS and loc[i - 1] in VARIANT_PARENTS:
            continue
        out.append(part)
    return tuple(out)


def load_config(path: Path | None, overrides: list[str] | None = None, *,
                text: str | None = None, env: dict[str, str] | None = None) -> Config:
    """Read, substitute, override and validate a config; raise ConfigError with every problem."""
    origin = str(path) if path is not None else "config"
    if text is None:
        if path is None:
            raise ConfigError("no config given")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise InputError(f"config file {path} does not exist",
                             hint="give an existing file with --config") from err
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"config file {path} cannot be read: {err}") from err
    data, lines = _compose(text, origin)
    if not isinstance(data, dict):
        raise ConfigError("bad config", problems=[
            f"{origin}:1: the config must be a mapping of keys (device_id, mqtt, pipelines, ...)"])
    for item in overrides or []:
        key_path, value = parse_override(item)
        _apply_override(data, key_path, value, lines)
    problems: list[str] = []
    data = _substitute_env(data, (), lines, dict(os.environ) if env is None else env, problems)
    if problems:
        raise ConfigError("config has unset environment variables", problems=problems)
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    try:
        return Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError("invalid config", problems=_format_validation(err, lines)) from err
