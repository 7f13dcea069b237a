"""The one config loader every entry point uses: OmegaConf YAML composed from groups, overridden on the command line.

`load_config("evaluate", ["env=pointmaze", "planner=cem", "mpc.horizon=40"])`
  1. `configs/<entry>.yaml` is the base. Its `defaults` mapping names one member of each group it uses.
  2. `group=name` picks `configs/<group>/<name>.yaml` instead of the default member. A member is merged at the
     root, so an env file can also set the `model`, `train` or `mpc` keys that suit that env. The entry file's
     `member_sections` lists the top-level sections it takes from members; the others are dropped (train.py
     takes an env file's `data`, `model` and `train`, evaluate.py its `env`, `mpc` and `planner_settings`), so a
     config holds only what its entry point uses and a key of another entry point's section is an unknown key.
  3. An env member's `planner_settings: {<planner name>: {key: value}}` section (kept by entry points that list it
     in member_sections) is merged into `planner` when that planner is chosen: the planner's settings tuned for
     that env, as the GRASP paper tunes per env. Each value is checked as a command-line value is, and `--help`
     marks each such key with the file that set it.
  4. Every other `a.b=value` must name a key that exists after composition; values are parsed as YAML
     (`episodes=10`, `planners=[grasp,cem]`, `checkpoint=null`). A value must keep the key's type
     (an int may stand for a float; a null key takes anything). `null` (or an empty value, `key=`) is accepted only
     by a key whose default is null or whose comment in the config file says what null means (`# null: ...`).
Any mistake raises ConfigError with one line naming the bad value and the accepted ones; `main()` turns it
(and the other user errors an entry point names) into that line on stderr and exit code 2, and Ctrl-C into one
line ("interrupted", or what an `Interrupted` says was kept) and exit code 130.
`--help` lists every key of the composed config with its default and the comment after it in the YAML files
(`key: value  # meaning`, read by `comments`), so the config files are the one place keys are documented.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent
PLANNER_SETTINGS = "planner_settings"  # an env member's per-planner settings (see the module docstring)
USAGE_EXIT, INTERRUPTED_EXIT = 2, 130  # 130 = 128 + SIGINT, what a shell reports for Ctrl-C


class ConfigError(ValueError):
    """A bad config name, key or value; the message is one line for the user."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C caught by an entry point that saved what it had; the message is one line for the user."""


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


def comments(path: Path) -> dict[str, str]:
    """{dotted key: its trailing comment} of one YAML config file, by a line-based read of block mappings:
    `key: value  # comment`, nesting by indentation. A flow mapping (`key: {a: 1}`) is one key; a `#` inside a
    quoted value is not supported (none of our files has one)."""
    return _scan(path)[0]


def _scan(path: Path) -> tuple[dict[str, str], set[str]]:
    """(comments, the dotted keys whose value is a flow mapping `{...}`) of one YAML file."""
    notes: dict[str, str] = {}
    flow: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing block mappings
    for line in path.read_text().splitlines():
        match = re.match(r"^( *)([A-Za-z_][\w.-]*)\s*:(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        value, _, comment = rest.partition("#")
        if comment.strip():
            notes[dotted] = comment.strip()
        if not value.strip():
            stack.append((indent, key))
        elif value.strip().startswith("{"):
            flow.add(dotted)
    return notes, flow


def _nullable(key: str, old, notes: dict[str, str]) -> bool:
    return old is None or "null" in notes.get(key, "")


def _check_type(key: str, old, new, raw: str = "", notes: dict[str, str] | None = None) -> None:
    if new is None:
        if old is None or _nullable(key, old, notes or {}):
            return
        raise ConfigError(f"{key}={raw!r}: expected a value of type {type(old).__name__} (default {old!r}); "
                          f"this key does not take null")
    if old is None:
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


def _compose(entry: str, argv: Sequence[str], config_dir: Path):
    """(config with group members merged, chosen members, key comments, the other overrides as (key, arg))."""
    base_path = config_dir / f"{entry}.yaml"
    if not base_path.exists():
        known = ", ".join(sorted(p.stem for p in config_dir.glob("*.yaml")))
        raise ConfigError(f"unknown entry config {entry!r}; known: {known}")
    base = _read(base_path)
    chosen = dict(OmegaConf.to_container(base.pop("defaults", {})) or {})
    sections = base.pop("member_sections", None)  # None: every section of a member

    overrides = []
    for arg in argv:
        key, _ = _split(arg)
        if key in groups(config_dir):
            if key not in chosen:
                raise ConfigError(f"{entry} takes no {key}=...; its groups: {', '.join(chosen) or 'none'}")
            chosen[key] = _split(arg)[1]
        else:
            overrides.append((key, arg))

    notes, flow = _scan(base_path)
    cfg = base
    tuned, tuned_file = None, None  # the env member's planner_settings and its file
    for group, name in chosen.items():
        if name not in members(group, config_dir):
            raise ConfigError(f"unknown {group} {name!r}; choose one of: {', '.join(members(group, config_dir))}")
        path = config_dir / group / f"{name}.yaml"
        member = _read(path)
        for section in [k for k in member if sections is not None and k not in sections]:
            member.pop(section)
        if group == "env" and PLANNER_SETTINGS in member:
            tuned, tuned_file = OmegaConf.to_container(member.pop(PLANNER_SETTINGS)), path
        cfg = OmegaConf.merge(cfg, member)
        member_notes, member_flow = _scan(path)
        # the entry file's comment wins, then the chosen member's; a key the member leaves undocumented takes the
        # comment another member of the group gives it (e.g. env keys are documented once, in env/wall.yaml)
        others = [_scan(config_dir / group / f"{m}.yaml")[0] for m in members(group, config_dir) if m != name]
        notes = {**{k: v for o in reversed(others) for k, v in o.items()}, **member_notes, **notes}
        flow |= member_flow
    if tuned is not None:
        _apply_planner_settings(cfg, tuned, tuned_file, notes, config_dir)
    return cfg, chosen, (notes, flow), overrides


def _apply_planner_settings(cfg, tuned, path: Path, notes: dict[str, str], config_dir: Path) -> None:
    """Merge the env file's settings for the chosen planner into cfg.planner, each key checked as a command-line
    value would be; its --help comment names the file."""
    known = members("planner", config_dir)
    where = f"{path.relative_to(config_dir)} {PLANNER_SETTINGS}"
    if not isinstance(tuned, dict) or not all(isinstance(v, dict) for v in tuned.values()):
        raise ConfigError(f"{where}: expected a mapping of planner names to settings, e.g. {{grasp: {{gamma: 1.0}}}}")
    for name in tuned:
        if name not in known:
            raise ConfigError(f"{where}.{name} names no planner; choose from: {', '.join(known)}")
    if "planner" not in cfg or cfg.planner.name not in tuned:
        return
    where, settings, own_notes = f"{where}.{cfg.planner.name}", tuned[cfg.planner.name], _scan(path)[0]
    planner = OmegaConf.to_container(cfg.planner)
    for key, value in settings.items():
        if key not in planner:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(planner))}")
        _check_type(f"{where}.{key}", planner[key], value, str(value),
                    {f"{where}.{key}": notes.get(f"planner.{key}", "")})
        own = own_notes.get(f"{PLANNER_SETTINGS}.{cfg.planner.name}.{key}")
        notes[f"planner.{key}"] = f"[{where}] {own or notes.get(f'planner.{key}', '')}".rstrip()
    cfg.planner = OmegaConf.merge(cfg.planner, settings)


def load_config(entry: str, argv: Sequence[str] = (), config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Compose `<config_dir>/<entry>.yaml` with its groups and apply `key=value` overrides (see module docstring)."""
    cfg, _, (notes, _), overrides = _compose(entry, argv, config_dir)
    for key, arg in overrides:
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            while parent_key and not isinstance(OmegaConf.select(cfg, parent_key), DictConfig):
                parent_key = parent_key.rpartition(".")[0]  # the deepest section that exists, e.g. the root
            valid = sorted(OmegaConf.select(cfg, parent_key).keys()) if parent_key else sorted(cfg.keys())
            where = f" under {parent_key!r}" if parent_key else ""
            raise ConfigError(f"unknown config key {key!r}; valid keys{where}: {', '.join(map(str, valid))}")
        new = OmegaConf.to_container(OmegaConf.from_dotlist([arg]), resolve=True)
        for part in key.split("."):
            new = new[part]
        old = parent[leaf]
        old = OmegaConf.to_container(old) if isinstance(old, DictConfig) or OmegaConf.is_list(old) else old
        _check_type(key, old, new, _split(arg)[1], notes)
        OmegaConf.update(cfg, key, new, merge=False)
    return cfg


def _flat(node, flow: set[str], prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) leaves; a flow mapping written on one line (`{a: 1}`) stays one entry, listed in `flow`."""
    if isinstance(node, dict) and node and prefix[:-1] not in flow:
        return [item for k, v in node.items() for item in _flat(v, flow, f"{prefix}{k}.")]
    return [(prefix[:-1], node)]


def _show(value) -> str:
    """A value as it would be typed on the command line (YAML flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def invocation(entry: str) -> str:
    """How the running program was started, for `usage:` lines: `python -m PKG.MOD` for a module run with -m,
    `python PATH` for a script, `python <entry>.py` when neither is known (e.g. under pytest)."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", "pytest", "pytest.__main__"):
        return f"python -m {spec.name}"
    script = getattr(main_module, "__file__", None)
    if spec is None and script and Path(script).stem != "pytest":
        return f"python {os.path.relpath(script) if not os.path.isabs(sys.argv[0]) else script}"
    return f"python {entry}.py"


def help_text(entry: str, argv: Sequence[str] = (), config_dir: Path = CONFIG_DIR, prog: str | None = None) -> str:
    """The `--help` page: the groups with their members, then every key of the config that `argv`'s group
    choices compose, with its default and the comment after it in the config files. `prog`: the usage line's
    command (default `python <entry>.py`)."""
    cfg, chosen, (notes, flow), _ = _compose(entry, [a for a in argv if not a.startswith("-")], config_dir)
    picked = [f"{g}={name}" for g, name in chosen.items()]
    pad = max(map(len, picked), default=0)
    lines = [f"usage: {prog or f'python {entry}.py'} [group=name ...] [key=value ...]", "",
             "groups (a member's file is merged at the root; `group=name --help` lists its keys):"]
    lines += [f"  {p:<{pad}}  choices: {', '.join(members(g, config_dir))}" for p, g in zip(picked, chosen)]
    lines += ["", "keys (key=value, values in YAML; null only for a key whose default is null or whose comment "
              "says what null means):"]
    flow = {k for k in flow if not any(n.startswith(k + ".") for n in notes)}  # documented members: one row each
    rows = [(k, _show(v), notes.get(k, "")) for k, v in _flat(OmegaConf.to_container(cfg), flow)]
    width = min(max(len(f"{k}={v}") for k, v, _ in rows), 40)
    for key, value, note in rows:
        shown = f"{key}={value}"
        if len(shown) > width and note:
            lines += [f"  {shown}", f"  {'':<{width}}  {note}"]
        else:
            lines.append(f"  {shown:<{width}}  {note}".rstrip())
    return "\n".join(lines) + "\n"


def main(run: Callable[[DictConfig], object], entry: str, argv: Sequence[str] | None = None,
         user_errors: tuple[type[BaseException], ...] = (), config_dir: Path = CONFIG_DIR) -> int:
    """Entry-point wrapper: load the config, call `run(cfg)`; user errors become one line on stderr and exit 2,
    Ctrl-C one line and exit 130."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if any(a in ("-h", "--help") for a in argv):
            print(help_text(entry, [a for a in argv if a.partition("=")[0] in groups(config_dir)], config_dir,
                            invocation(entry)), end="")
            return 0
        run(load_config(entry, argv, config_dir))
    except (ConfigError, *user_errors) as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_EXIT
    except KeyboardInterrupt as err:
        print(str(err) or "interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    return 0
