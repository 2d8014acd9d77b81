from django.urls import path

from notifications import views_push

urlpatterns = [
    path("", views_push.PushSubscriptionListView.as_view(), name="push-subscription-list"),
    path("<str:subscription_id>/", views_push.PushSubscriptionDetailView.as_view(), name="push-subscription-detail"),
]
