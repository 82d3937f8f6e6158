"""Close a user's live sockets when their credentials are revoked.

``user_logged_out`` closes the sockets opened with that session's cookie; setting a password
(``user.set_password()`` then ``save()``, as Django's password views, ``changepassword`` and
the admin do) closes all of the user's sockets, token sockets included, once the transaction
commits. The sockets get a ``forbidden`` error and close code 4001.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.db import transaction

from . import api

logger = logging.getLogger(__name__)


def _revoke(user_pk: Any, session_key: str | None, reason: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: a sync view or a management command
        try:
            api.revoke_user(user_pk, session_key=session_key, reason=reason)
        except Exception:
            logger.warning("could not close the sockets of user %r", user_pk, exc_info=True)
        return
    task = asyncio.ensure_future(api.arevoke_user(user_pk, session_key=session_key, reason=reason))
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("could not close a user's sockets", exc_info=task.exception())


def on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if user is None or getattr(user, "pk", None) is None:
        return
    session = getattr(request, "session", None)
    _revoke(user.pk, getattr(session, "session_key", None), "you logged out")


def on_user_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    # AbstractBaseUser.set_password() keeps the new raw password in ``_password`` until save()
    # has sent post_save: a save with it set is a password change.
    if created or getattr(instance, "_password", None) is None:
        return
    pk = instance.pk
    transaction.on_commit(lambda: _revoke(pk, None, "your password changed: log in again"))
