from django.urls import path

from api import domain_views, views

urlpatterns = [
    path("", views.ApiIndex.as_view(), name="api-index"),
    path("messages", views.MessageCollection.as_view(), name="message-collection"),
    path("messages/batch", views.MessageBatch.as_view(), name="message-batch"),
    path("messages/<uuid:message_id>", views.MessageDetail.as_view(), name="message-detail"),
    path("messages/<uuid:message_id>/cancel", views.MessageCancel.as_view(), name="message-cancel"),
    path("messages/<uuid:message_id>/events", views.MessageEvents.as_view(), name="message-events"),
    path("templates", views.TemplateCollection.as_view(), name="template-collection"),
    path("templates/<slug:name>", views.TemplateDetail.as_view(), name="template-detail"),
    path("suppressions", views.SuppressionCollection.as_view(), name="suppression-collection"),
    path(
        "suppressions/<str:address>",
        views.SuppressionDetail.as_view(),
        name="suppression-detail",
    ),
    path("domains", domain_views.DomainCollection.as_view(), name="domain-collection"),
    path("domains/<int:domain_id>", domain_views.DomainDetail.as_view(), name="domain-detail"),
    path(
        "domains/<int:domain_id>/verify", domain_views.DomainVerify.as_view(), name="domain-verify"
    ),
    path(
        "domains/<int:domain_id>/rotate-key",
        domain_views.DomainRotateKey.as_view(),
        name="domain-rotate-key",
    ),
    path(
        "domains/<int:domain_id>/activate-key",
        domain_views.DomainActivateKey.as_view(),
        name="domain-activate-key",
    ),
]
