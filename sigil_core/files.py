"""Finding and reading the config file; kept apart from the config model so that loading
plugins (on every command, `sigil --help` included) does not build the whole configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError


def sigil_home() -> Path:
    return Path(os.environ.get("SIGIL_HOME") or Path.home() / ".sigil").expanduser()


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, "
                          f"got {type(data).__name__}")
    return data


def disabled_plugins() -> list[str]:
    """``plugins.disabled`` from the config file, read without building the whole config.

    Loading plugins happens on every command, `sigil --help` included, so this stays cheap;
    a config file with errors yields [] here and is reported by the command that loads it.
    """
    explicit = os.environ.get("SIGIL_CONFIG")
    path = Path(explicit).expanduser() if explicit else sigil_home() / "config.yaml"
    if not path.is_file():
        return []
    try:
        data = read_yaml(path)
    except ConfigError:
        return []
    names = (data.get("plugins") or {}).get("disabled") if isinstance(data.get("plugins"),
                                                                        dict) else None
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


