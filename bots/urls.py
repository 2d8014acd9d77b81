from django.urls import path

from bots import views

urlpatterns = [
    path("", views.AccessTokenListView.as_view(), name="access-token-list"),
    path("<str:token_id>/", views.AccessTokenDetailView.as_view(), name="access-token-detail"),
]
