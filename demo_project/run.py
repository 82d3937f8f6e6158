#!/usr/bin/env python3
"""Start the demo: ``python3 demo_project/run.py [port]`` (default 8000).

On first use it creates ``.venv`` with everything installed (demo_project/bootstrap.py), applies
the migrations, then serves the demo with daphne at http://127.0.0.1:PORT/. SQLite and the
in-memory channel layer by default; set REDIS_URL=redis://127.0.0.1:6379/0 to share rooms
through Redis with other instances.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_project.bootstrap import reexec_in_venv  # noqa: E402

if __name__ == "__main__":
    # The demo needs the app and the command-line client (the `client` extra), not the test tools.
    reexec_in_venv(__file__, extra="client")
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    port = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "8000")
    # The demo page shows which instance its socket is on: name this one after its port.
    os.environ.setdefault("THINWS_INSTANCE", f"port {port}")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], check=True)
    print(f"thinws-channels demo on http://127.0.0.1:{port}/  (Ctrl+C to stop)", flush=True)
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            port,
            "demo_project.asgi:application",
        ],
    )
