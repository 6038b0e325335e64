from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "REST API"

    def ready(self) -> None:
        from anymail.signals import tracking

        from api.esp_events import esp_event_received

        # Events from the relays' tracking webhooks (api.esp_webhooks), once anymail verified them.
        tracking.connect(esp_event_received, dispatch_uid="mailhub.esp_event_received")
