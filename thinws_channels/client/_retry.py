"""When the client connects again: the close table of docs/protocol.md, full-jitter backoff, and
the bounds (``max_attempts``, ``give_up_after``) after which it gives up."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from thinws_channels.protocol import CloseCode

from ._errors import ThinWSConnectError


def reconnects_after(code: int, *, has_token_provider: bool) -> bool:
    """Whether a close with ``code`` calls for a reconnect: not after 1000 (disconnect), not
    after 4001 (credentials refused or revoked) unless a token_provider can give new ones."""
    if code == CloseCode.NORMAL:
        return False
    return code != CloseCode.REFUSED or has_token_provider


@dataclass(frozen=True)
class RetryPolicy:
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    max_attempts: int | None = None
    give_up_after: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.backoff_initial <= self.backoff_max or not self.backoff_factor >= 1:
            raise ValueError(
                "backoff needs 0 <= backoff_initial <= backoff_max and backoff_factor >= 1, got "
                f"{self.backoff_initial!r}, {self.backoff_max!r}, {self.backoff_factor!r}"
            )
        attempts = self.max_attempts
        if attempts is not None and not (isinstance(attempts, int) and attempts > 0):
            raise ValueError(f"max_attempts must be a whole number above 0, got {attempts!r}")
        if self.give_up_after is not None and not self.give_up_after > 0:
            raise ValueError(f"give_up_after must be above 0 seconds, got {self.give_up_after!r}")

    def delay(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(backoff_max, backoff_initial * factor ** failures)]."""
        cap = self.backoff_initial * self.backoff_factor ** min(failures, 64)
        return random.uniform(0, min(self.backoff_max, cap))


class Attempts:
    """The connect attempts of one connecting phase (the first connect, or after a drop)."""

    def __init__(self, policy: RetryPolicy, urls: list[str], *, at_once: bool, limit: int | None):
        self.policy = policy
        self.urls = urls
        self.at_once = at_once  # the next attempt goes without delay
        self.limit = limit  # attempts allowed, None: no bound
        self.failures = 0
        self.last: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()

    def next_delay(self, backoff: bool = True) -> float:
        """Seconds to wait before the next attempt."""
        delay = 0.0 if self.at_once or not backoff else self.policy.delay(self.failures)
        self.at_once = False
        return delay

    def left(self) -> float | None:
        """Seconds until ``give_up_after`` runs out, or None."""
        if self.policy.give_up_after is None:
            return None
        return self.policy.give_up_after - (self._loop.time() - self._started)

    def failed(self, error: BaseException) -> bool:
        """Count a failed attempt; True when that was the last one allowed."""
        self.failures += 1
        self.last = error
        return self.limit is not None and self.failures >= self.limit

    def error(self) -> ThinWSConnectError:
        elapsed = self._loop.time() - self._started
        error = ThinWSConnectError(self.urls, self.failures, elapsed, self.last)
        error.__cause__ = self.last
        return error
