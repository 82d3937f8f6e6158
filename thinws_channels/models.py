"""What the app stores: connectionIDs, rooms, who is in which room, and who is online.

Models hold data only: no channel-layer calls, no knowledge of sockets. Ids are looked up by
``key`` (40 hex digits of SHA-256, see ``protocol.storage_key``) so that they compare exactly on
every database, whatever its collation.
"""

from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .protocol import storage_key


class Connection(models.Model):
    """A client's persistent identity: its rooms are stored under it."""

    connection_id = models.CharField(_("connection id"), max_length=128)
    key = models.CharField(_("key"), max_length=40, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="thinws_connections",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_seen_at = models.DateTimeField(_("last seen"), auto_now=True)

    class Meta:
        verbose_name = _("connection")
        verbose_name_plural = _("connections")
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return self.connection_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.key = storage_key(self.connection_id)  # rows made anywhere (admin, shell) match
        super().save(*args, **kwargs)


class Room(models.Model):
    """A room; its channel-layer group is ``protocol.room_group(room_id)``."""

    room_id = models.CharField(_("room id"), max_length=200)
    key = models.CharField(_("key"), max_length=40, unique=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("room")
        verbose_name_plural = _("rooms")
        ordering = ["room_id"]

    def __str__(self) -> str:
        return self.room_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.key = storage_key(self.room_id)
        super().save(*args, **kwargs)


class Subscription(models.Model):
    """A connectionID's membership of a room; kept across disconnects."""

    connection = models.ForeignKey(
        Connection,
        verbose_name=_("connection"),
        on_delete=models.CASCADE,
        related_name="subscriptions",
    )
    room = models.ForeignKey(
        Room, verbose_name=_("room"), on_delete=models.CASCADE, related_name="subscriptions"
    )
    created_at = models.DateTimeField(_("joined"), auto_now_add=True)

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "room"], name="thinws_subscription_unique"
            )
        ]
        # The unique constraint's index serves "the rooms of a connection"; this one serves
        # "the members of a room" (admin, presence).
        indexes = [models.Index(fields=["room", "connection"], name="thinws_sub_room_idx")]

    def __str__(self) -> str:
        return f"{self.connection} in {self.room}"


class ServerInstance(models.Model):
    """A server process that holds sockets; it writes a heartbeat while it lives."""

    name = models.CharField(_("name"), max_length=200)
    hostname = models.CharField(_("hostname"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), db_index=True)

    class Meta:
        verbose_name = _("server instance")
        verbose_name_plural = _("server instances")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Presence(models.Model):
    """One live socket of a connectionID, on one server instance: who is online."""

    socket_id = models.CharField(_("socket id"), max_length=40, unique=True)
    connection = models.ForeignKey(
        Connection,
        verbose_name=_("connection"),
        on_delete=models.CASCADE,
        related_name="presences",
    )
    instance = models.ForeignKey(
        ServerInstance,
        verbose_name=_("server instance"),
        on_delete=models.CASCADE,
        related_name="presences",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    client = models.CharField(_("client address"), max_length=100, blank=True)
    connected_at = models.DateTimeField(_("connected"), auto_now_add=True)

    class Meta:
        verbose_name = _("online socket")
        verbose_name_plural = _("online sockets")
        ordering = ["-connected_at"]

    def __str__(self) -> str:
        return f"{self.connection} on {self.instance}"
