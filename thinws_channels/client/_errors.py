"""The exceptions of the client: every failure a call can meet is a :class:`ThinWSError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Frame = dict[str, Any]


class ThinWSError(Exception):
    """An ``error`` reply of the server (``code`` is the server's code: ``not_subscribed``,
    ``forbidden``, ...), or a failure of the client, whose code is one of ``timeout``, ``closed``,
    ``disconnected``, ``queue_full``, ``not_connected``, ``already_connected``,
    ``connect_failed``, ``token_provider_failed``.

    ``frame`` is the server's error frame, when there is one; ``message_id`` its ``messageID``.
    """

    def __init__(self, code: str, message: str, *, frame: Frame | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame = frame

    @property
    def message_id(self) -> Any:
        return None if self.frame is None else self.frame.get("messageID")

    @classmethod
    def from_frame(cls, frame: Frame) -> ThinWSError:
        return cls(str(frame.get("code")), str(frame.get("message")), frame=frame)


class ThinWSTimeout(ThinWSError, TimeoutError):
    """No reply within ``request_timeout`` seconds of sending (also a :class:`TimeoutError`).
    The frame was sent: a publish may still have gone through."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)


class ThinWSClosed(ThinWSError):
    """The client is closed (``close()``, ``disconnect()``, or it stopped on its own) before the
    call could be sent. ``close_code`` is the WebSocket close code that stopped it, if any."""

    def __init__(
        self, message: str, *, close_code: int | None = None, code: str = "closed"
    ) -> None:
        super().__init__(code, message)
        self.close_code = close_code


class ThinWSDisconnected(ThinWSClosed):
    """The socket went away after the call was sent and before its reply came (code
    ``disconnected``). For a publish this means *unknown*: the message may or may not have been
    published; the application decides whether to send it again."""

    def __init__(self, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message, close_code=close_code, code="disconnected")


class ThinWSConnectError(ThinWSError, ConnectionError):
    """The client gave up connecting (code ``connect_failed``): ``max_attempts`` failed attempts
    in a row, ``give_up_after`` seconds without a connection, or every URL failed once with
    ``reconnect=False``. ``last_error`` is the last attempt's failure (also ``__cause__``)."""

    def __init__(
        self, urls: Sequence[str], attempts: int, elapsed: float, last_error: BaseException | None
    ) -> None:
        where = ", ".join(urls)
        last = "none" if last_error is None else f"{type(last_error).__name__}: {last_error}"
        super().__init__(
            "connect_failed",
            f"could not connect to {where} ({attempts} attempt{'s' * (attempts != 1)} in "
            f"{elapsed:.1f} s); the last failure: {last}",
        )
        self.urls = list(urls)
        self.attempts = attempts
        self.last_error = last_error
