"""Config files: YAML read safely into Python values, and written back.

Reading is bounded (``parsgd.config.limits``): size, nesting and alias expansion; every
failure is one ConfigError naming the file and, where known, the line. Paths written in a
file are relative to it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from parsgd.config.limits import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, MAX_YAML_VALUES, count_values
from parsgd.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; users mean a number, as in YAML 1.2.

    Nesting is bounded while composing (5000 ``[`` would otherwise exhaust the stack).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_YAML_DEPTH} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text to Python values; a document that expands (aliases) past the bound is a
    ``yaml.YAMLError`` like any other bad YAML."""
    value = yaml.load(text, Loader=_Loader)
    if count_values(value) > MAX_YAML_VALUES:
        raise yaml.YAMLError(f"more than {MAX_YAML_VALUES} values once aliases are expanded")
    return value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a one-line ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or (str(exc) if exc.args else "invalid YAML")
        raise ConfigError(f"{where}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: config file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    return raw


def absolute_path(path: Path) -> Path:
    """``path`` made absolute, symlinks resolved where they can be (a loop is left as is:
    reading the file then names the problem)."""
    try:
        return path.expanduser().resolve()
    except (RuntimeError, OSError):  # a symlink loop
        return Path(os.path.abspath(path.expanduser()))


def anchor_data_path(raw: dict[str, Any], directory: Path) -> None:
    """Make a relative ``data.path`` written in a file relative to that file's ``directory``."""
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        path = Path(data["path"]).expanduser()
        if not path.is_absolute():
            data["path"] = str(absolute_path(directory / path))


def dump_config(config: dict[str, Any]) -> str:
    """The YAML text of a resolved config, as ``config.yaml`` holds it."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
