"""The docs stay true to the code: what they cite exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def functions_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_test_the_threat_table_cites_exists():
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    cited = re.findall(r"`(test_\w+\.py)::(test_\w+)`", text)
    assert len(cited) > 40, "the threat table cites fewer tests than it should"
    missing = [
        f"{module}::{name}"
        for module, name in cited
        if name not in functions_of(ROOT / "tests" / module)
    ]
    assert missing == []
    # every row of the table names at least one test
    rows = [line for line in text.splitlines() if line.startswith("| ") and "::" not in line]
    table_start = text.index("| threat | what stops it |")
    assert [r for r in rows if text.index(r) > table_start and "threat" not in r] == []
