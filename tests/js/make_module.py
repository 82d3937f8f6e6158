"""Generate thinws.mjs, the ES-module twin of thinws.js, or check that it is up to date.

thinws.js is a classic script (no ``export`` allowed): its code sits between two marker lines
inside a function that publishes ``ThinWSClient`` and ``ThinWSError`` on ``window`` (or on
``module.exports`` under CommonJS). thinws.mjs is the same code between the same markers, with a
header and an ``export`` line instead of the wrapper. Edit thinws.js, then run::

    python tests/js/make_module.py           # writes thinws.mjs
    python tests/js/make_module.py --check   # exit 1 (with a diff) when thinws.mjs is stale
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "thinws_channels" / "static" / "thinws_channels"
SCRIPT = STATIC / "thinws.js"
MODULE = STATIC / "thinws.mjs"

BEGIN = "// ---- shared body: thinws.mjs holds these lines unchanged (tests/test_js_sync.py) ----\n"
END = "// ---- end of the shared body ----\n"
HEADER = (
    "/*! thinws.mjs: the ES-module build of thinws.js (the JavaScript client of thinws-channels,\n"
    " * docs/client-js.md). GENERATED from thinws.js by tests/js/make_module.py: do not edit. */\n"
)
EXPORT = "export { ThinWSClient, ThinWSError };\n"


def shared_body(text: str, name: str) -> str:
    """The lines between the two markers (both included); ValueError when they are missing."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(
            f"{name}: the marker lines {BEGIN.strip()!r} / {END.strip()!r} are missing"
        )
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{name}: each marker line must appear exactly once")
    return text[start : end + len(END)]


def module_text(script_text: str) -> str:
    """The exact text thinws.mjs must have for this thinws.js."""
    return HEADER + shared_body(script_text, SCRIPT.name) + EXPORT


def stale_diff(script: Path = SCRIPT, module: Path = MODULE) -> str:
    """A unified diff from the thinws.mjs on disk to the expected one; empty when in sync."""
    expected = module_text(script.read_text(encoding="utf-8"))
    actual = module.read_text(encoding="utf-8") if module.exists() else ""
    return "".join(
        difflib.unified_diff(
            actual.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            fromfile=f"{module.name} (on disk)",
            tofile=f"{module.name} (generated from {script.name})",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        diff = stale_diff()
        if diff:
            sys.stdout.write(diff)
            print(f"{MODULE} is out of date: run python tests/js/make_module.py", file=sys.stderr)
            return 1
        return 0
    MODULE.write_text(module_text(SCRIPT.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {MODULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
