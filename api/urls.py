from django.urls import path

from api import views

urlpatterns = [
    path("messages", views.MessageCollection.as_view(), name="message-collection"),
    path("messages/<uuid:message_id>", views.MessageDetail.as_view(), name="message-detail"),
]
