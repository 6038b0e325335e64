from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from deliveries.services import history_purged
        from webhooks.receivers import on_history_purged

        history_purged.connect(on_history_purged, dispatch_uid="webhooks.on_history_purged")
