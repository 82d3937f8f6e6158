"""System programs that pip cannot install (nginx, haproxy, chromium, node, openssl).

A test that needs one calls :func:`missing` when it is not there: the test is skipped, saying
what to install, except under ``CI=true``, where it fails, because ``.ci/run`` installs them all
and a skip there would hide a test that never ran.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(problem: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem} (CI must install it: .ci/run)", pytrace=False)
    pytest.skip(problem)
