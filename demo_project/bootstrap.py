"""Make a virtual environment with the project installed, then re-run a script inside it.

Used by ``demo_project/run.py`` and ``tests/run.py`` so that both work from a clean clone with
nothing installed by hand: the first run creates ``.venv`` (or ``$THINWS_VENV``) and installs the
project with its test extra; later runs reuse it, and reinstall when ``pyproject.toml`` changed.
Only the standard library is used here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def venv_dir() -> Path:
    return Path(os.environ.get("THINWS_VENV") or ROOT / ".venv")


def _python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _stamp() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv(extra: str = "test") -> Path:
    """Create or refresh the environment; return its interpreter."""
    env_dir = venv_dir()
    python = _python(env_dir)
    stamp_file = env_dir / f".thinws-installed-{extra}"
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == _stamp():
        return python
    if not python.exists():
        print(f"creating a virtual environment in {env_dir} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(env_dir)
    print("installing thinws-channels and its dependencies ...", flush=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[{extra}]"], check=True)
    stamp_file.write_text(_stamp())
    return python


def reexec_in_venv(script: str, extra: str = "test") -> None:
    """Run ``script`` again under the environment's interpreter unless already there."""
    python = ensure_venv(extra)
    if Path(sys.prefix).resolve() == venv_dir().resolve():
        return
    os.execv(str(python), [str(python), script, *sys.argv[1:]])
