from django.urls import path

from webhooks import views

urlpatterns = [
    path("webhooks", views.WebhookCollection.as_view(), name="webhook-collection"),
    path("webhooks/<uuid:webhook_id>", views.WebhookDetail.as_view(), name="webhook-detail"),
    path(
        "webhooks/<uuid:webhook_id>/attempts",
        views.WebhookAttempts.as_view(),
        name="webhook-attempts",
    ),
    path("events", views.EventCollection.as_view(), name="event-collection"),
]
