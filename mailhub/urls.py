from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from api import unsubscribe
from deliveries import health, metrics
from mailhub import http_metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("metrics/http", http_metrics.http_metrics_view, name="metrics-http"),
    path("api/v1/", include("api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "api/redoc/",
        # drf-spectacular's page less its web fonts: offline, like the Swagger UI page.
        SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"),
        name="api-redoc",
    ),
    path("api/v1/", include("webhooks.urls")),
    # Relays' tracking webhooks (SES, SendGrid, ...), those MAILHUB_ESP_WEBHOOKS enables.
    path("esp/", include("api.esp_webhooks")),
    # RFC 8058 one-click unsubscribe links in mail: short, outside /api/ (an HTML page, no key).
    path("u/<str:token>", unsubscribe.one_click, name="unsubscribe"),
]

# Under /api/ every error is a problem (application/problem+json), even one no view raised.
handler400 = "api.errors.bad_request"
handler403 = "api.errors.permission_denied"
handler404 = "api.errors.page_not_found"
handler500 = "api.errors.server_error"
