"""What every run records beside its resolved config (checkpoint meta, results files): the code's git commit and
the package versions."""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    """HEAD of the repo, marked when tracked files differ from it (the run used code no commit holds); None
    outside a git checkout."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0 or not head.stdout.strip():
        return None
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def versions() -> dict:
    try:
        package = importlib.metadata.version("grasp-wm")
    except importlib.metadata.PackageNotFoundError:
        package = None
    return {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": np.__version__,
            "grasp-wm": package}
