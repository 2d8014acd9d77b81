from django.urls import path

from notifications import views

urlpatterns = [
    path("", views.WebhookListView.as_view(), name="webhook-list"),
    path("<str:webhook_id>/", views.WebhookDetailView.as_view(), name="webhook-detail"),
    path("<str:webhook_id>/deliveries/", views.WebhookDeliveryListView.as_view(), name="webhook-deliveries"),
]
