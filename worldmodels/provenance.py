"""What every run records beside its resolved config (checkpoint meta, results files): the code's git commit and
the package versions; and what a resumed run (train.py, evaluate.py) may change of the config it continues."""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESUME_MAY_CHANGE = ("resume", "logdir", "device", "threads")  # top-level keys a resumed run may set anew


def uncommitted_changes(repo: Path = REPO) -> bool:
    """Tracked files outside benchmarks/results differ from HEAD: a run would use code no commit holds. Results
    folders are outputs, not code (a sweep or evaluation rewrites its own committed files), and untracked files are
    not the repo's. False outside a git checkout."""
    out = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", ".",
                          ":(exclude)benchmarks/results"], capture_output=True, text=True)
    return out.returncode == 0 and bool(out.stdout.strip())


def git_commit(repo: Path = REPO) -> str | None:
    """HEAD of the repo, marked when its code differs from it (`uncommitted_changes`); None outside a checkout."""
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + (" (with uncommitted changes)" if uncommitted_changes(repo) else "")


def versions() -> dict:
    """Package versions and torch's CPU kernel level (e.g. AVX2, AVX512): CPU kernels of another level sum in
    another order, and a chaotic env (Push-T) turns those last-bit differences into other episodes, so the same
    seed and config give the same results only on the same versions and kernel level."""
    try:
        package = importlib.metadata.version("grasp-wm")
    except importlib.metadata.PackageNotFoundError:
        package = None
    return {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": np.__version__,
            "grasp-wm": package, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def config_change(before: dict, now: dict) -> tuple[str, object, object] | None:
    """(dotted key, its value in `before`, in `now`) of the first key (sorted) whose value differs between two
    resolved configs outside RESUME_MAY_CHANGE, a key present in one only counting as None in the other; None when
    they agree, i.e. a run with `now` may continue the run with `before`."""
    old, new = _flat(before), _flat(now)
    changed = sorted(k for k in old.keys() | new.keys()
                     if k.split(".")[0] not in RESUME_MAY_CHANGE and old.get(k) != new.get(k))
    return (changed[0], old.get(changed[0]), new.get(changed[0])) if changed else None


def _flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    return {k: v for key, value in d.items()
            for k, v in (_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}).items()}


def repo_path(path) -> str:
    """`path` relative to the repo when inside it (results read the same on every machine), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def file_sha256(path) -> str:
    """The file's content hash: what a result names with a checkpoint path, as the file at that path may change."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
