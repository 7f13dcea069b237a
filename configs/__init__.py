"""The one config loader every entry point uses: OmegaConf YAML composed from groups, overridden on the command line.

`load_config("evaluate", ["env=pointmaze", "planner=cem", "mpc.horizon=40"])`
  1. `configs/<entry>.yaml` is the base. Its `defaults` mapping names one member of each group it uses.
  2. `group=name` picks `configs/<group>/<name>.yaml` instead of the default member. A member is merged at the
     root, so an env file can also set the `model`, `train` or `mpc` keys that suit that env.
  3. Every other `a.b=value` must name a key that exists after composition; values are parsed as YAML
     (`episodes=10`, `planners=[grasp,cem]`, `checkpoint=null`). A value must keep the key's type
     (an int may stand for a float; a null key takes anything).
Any mistake raises ConfigError with one line naming the bad value and the accepted ones; `main()` turns it
(and the other user errors an entry point names) into that line on stderr and exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent
USAGE_EXIT = 2


class ConfigError(ValueError):
    """A bad config name, key or value; the message is one line for the user."""


def groups(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.name for p in config_dir.iterdir() if p.is_dir() and not p.name.startswith("_"))


def members(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def _read(path: Path) -> DictConfig:
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return cfg


def _split(arg: str) -> tuple[str, str]:
    key, sep, value = arg.partition("=")
    if not sep or not key:
        raise ConfigError(f"bad argument {arg!r}: expected key=value, e.g. env=wall or mpc.horizon=40")
    return key.strip(), value


def _check_type(key: str, old, new) -> None:
    if old is None or new is None:
        return
    numeric = (int, float)
    ok = (
        (isinstance(old, bool) and isinstance(new, bool))
        or (isinstance(old, int) and not isinstance(old, bool) and isinstance(new, int) and not isinstance(new, bool))
        or (isinstance(old, float) and isinstance(new, numeric) and not isinstance(new, bool))
        or (isinstance(old, str) and isinstance(new, (str, int, float)) and not isinstance(new, bool))
        or (isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)))
        or (isinstance(old, dict) and isinstance(new, dict))
    )
    if not ok:
        raise ConfigError(f"{key}={new!r}: expected a value of type {type(old).__name__} (default {old!r})")


def load_config(entry: str, argv: Sequence[str] = (), config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Compose `<config_dir>/<entry>.yaml` with its groups and apply `key=value` overrides (see module docstring)."""
    base_path = config_dir / f"{entry}.yaml"
    if not base_path.exists():
        known = ", ".join(sorted(p.stem for p in config_dir.glob("*.yaml")))
        raise ConfigError(f"unknown entry config {entry!r}; known: {known}")
    base = _read(base_path)
    chosen = dict(OmegaConf.to_container(base.pop("defaults", {})) or {})

    overrides = []
    for arg in argv:
        key, value = _split(arg)
        if key in groups(config_dir):
            if key not in chosen:
                raise ConfigError(f"{entry} takes no {key}=...; its groups: {', '.join(chosen) or 'none'}")
            chosen[key] = value
        else:
            overrides.append((key, value, arg))

    cfg = base
    for group, name in chosen.items():
        if name not in members(group, config_dir):
            raise ConfigError(f"unknown {group} {name!r}; choose one of: {', '.join(members(group, config_dir))}")
        cfg = OmegaConf.merge(cfg, _read(config_dir / group / f"{name}.yaml"))

    for key, _, arg in overrides:
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            valid = sorted(parent.keys()) if isinstance(parent, DictConfig) else []
            where = f" under {parent_key!r}" if parent_key else ""
            raise ConfigError(f"unknown config key {key!r}; valid keys{where}: {', '.join(map(str, valid))}")
        new = OmegaConf.to_container(OmegaConf.from_dotlist([arg]), resolve=True)
        for part in key.split("."):
            new = new[part]
        old = parent[leaf]
        old = OmegaConf.to_container(old) if isinstance(old, DictConfig) or OmegaConf.is_list(old) else old
        _check_type(key, old, new)
        OmegaConf.update(cfg, key, new, merge=False)
    return cfg


def main(run: Callable[[DictConfig], object], entry: str, argv: Sequence[str] | None = None,
         user_errors: tuple[type[BaseException], ...] = (), config_dir: Path = CONFIG_DIR) -> int:
    """Entry-point wrapper: load the config, call `run(cfg)`; user errors become one line on stderr and exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: python {entry}.py [group=name ...] [key=value ...]\n"
              + "".join(f"  {g}: {', '.join(members(g, config_dir))}\n" for g in groups(config_dir)), end="")
        return 0
    try:
        run(load_config(entry, argv, config_dir))
    except (ConfigError, *user_errors) as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_EXIT
    return 0
