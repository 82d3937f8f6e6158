"""The admin: connections and their rooms, rooms and their members, who is online."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .models import Connection, Presence, Room, ServerInstance, Subscription


class OnlineFilter(admin.SimpleListFilter):
    title = _("online")
    parameter_name = "online"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Online")), ("no", _("Offline"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(presences__isnull=False).distinct()
        if self.value() == "no":
            return queryset.filter(presences__isnull=True)
        return queryset


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    raw_id_fields = ["connection", "room"]
    readonly_fields = ["created_at"]


class PresenceInline(admin.TabularInline):
    model = Presence
    extra = 0
    can_delete = False
    fields = readonly_fields = ("socket_id", "instance", "user", "client", "connected_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = ["connection_id", "user", "room_count", "socket_count", "last_seen_at"]
    list_filter = [OnlineFilter, "last_seen_at", "created_at"]
    search_fields = ["connection_id", "user__username", "subscriptions__room__room_id"]
    raw_id_fields = ["user"]
    readonly_fields = ["key", "created_at", "last_seen_at"]
    inlines = [SubscriptionInline, PresenceInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A connectionID is an identity: renaming it would hand its rooms to another client.
        return [*self.readonly_fields, "connection_id"] if obj else self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        return (
            super()
            .get_queryset(request)
            .select_related("user")
            .annotate(
                room_count=Count("subscriptions", distinct=True),
                socket_count=Count("presences", distinct=True),
            )
        )

    @admin.display(description=_("rooms"), ordering="room_count")
    def room_count(self, obj: Any) -> int:
        return int(obj.room_count)

    @admin.display(description=_("live sockets"), ordering="socket_count")
    def socket_count(self, obj: Any) -> int:
        return int(obj.socket_count)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["room_id", "member_count", "online_count", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["room_id", "subscriptions__connection__connection_id"]
    readonly_fields = ["key", "created_at"]
    inlines = [SubscriptionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Renaming a room would move its members without their sockets hearing of it.
        return [*self.readonly_fields, "room_id"] if obj else self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_count=Count("subscriptions", distinct=True),
                online_count=Count(
                    "subscriptions__connection__presences__connection", distinct=True
                ),
            )
        )

    @admin.display(description=_("members"), ordering="member_count")
    def member_count(self, obj: Any) -> int:
        return int(obj.member_count)

    @admin.display(description=_("members online"), ordering="online_count")
    def online_count(self, obj: Any) -> int:
        return int(obj.online_count)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["connection", "room", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["connection__connection_id", "room__room_id"]
    raw_id_fields = ["connection", "room"]
    list_select_related = ["connection", "room"]


@admin.register(Presence)
class PresenceAdmin(admin.ModelAdmin):
    list_display = ["connection", "user", "instance", "client", "connected_at"]
    list_filter = ["instance", "connected_at"]
    search_fields = ["connection__connection_id", "user__username", "client"]
    list_select_related = ["connection", "user", "instance"]
    readonly_fields = ["socket_id", "connection", "instance", "user", "client", "connected_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ServerInstance)
class ServerInstanceAdmin(admin.ModelAdmin):
    list_display = ["name", "hostname", "pid", "socket_count", "started_at", "heartbeat_at"]
    search_fields = ["name", "hostname"]
    readonly_fields = ["name", "hostname", "pid", "started_at", "heartbeat_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServerInstance]:
        return super().get_queryset(request).annotate(socket_count=Count("presences"))

    @admin.display(description=_("live sockets"), ordering="socket_count")
    def socket_count(self, obj: Any) -> int:
        return int(obj.socket_count)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
