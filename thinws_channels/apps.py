from django.apps import AppConfig


class ThinWSChannelsConfig(AppConfig):
    name = "thinws_channels"
    verbose_name = "ThinWS rooms"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
