from django.apps import AppConfig


class ThinWSChannelsConfig(AppConfig):
    name = "thinws_channels"
    verbose_name = "ThinWS rooms"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            receivers,
        )

        user_logged_out.connect(receivers.on_logged_out, dispatch_uid="thinws_channels.logout")
        post_save.connect(
            receivers.on_user_saved,
            sender=get_user_model(),
            dispatch_uid="thinws_channels.password",
        )
