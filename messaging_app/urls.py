from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

from chats.password_limits import LimitedAuthenticationForm, with_password_limit_status
from chats.views import TokenBlacklistView, TokenObtainView, TokenRefreshView
from messaging_app import pages
from messaging_app.api_docs import RedocView, SchemaView, SwaggerView
from notifications.views import NotificationPreferencesView
from notifications.views_digest import unsubscribe as digest_unsubscribe
from webclient.views import shell as webclient_shell

urlpatterns = [
    path("", pages.landing, name="landing"),
    path("docs/websocket/", pages.websocket_protocol, name="websocket-protocol"),
    path("app/", webclient_shell, name="webclient"),
    # The login forms answer 429 when the password limits refuse (chats/password_limits.py).
    path("admin/login/", with_password_limit_status(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/attachments/", include("attachments.urls")),
    path("api/webhooks/", include("notifications.urls")),
    path("api/push-subscriptions/", include("notifications.push_urls")),
    path("notifications/unsubscribe/<str:token>/", digest_unsubscribe, name="digest-unsubscribe"),
    path("api/users/me/notifications/", NotificationPreferencesView.as_view(), name="notification-preferences"),
    path("api/tokens/", include("bots.urls")),
    path("api/", include("chats.urls")),
    path("api/token/", TokenObtainView.as_view(), name="token_obtain_pair"),
    path("api/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("api/token/blacklist/", TokenBlacklistView.as_view(), name="token_blacklist"),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path(
        "api-auth/login/",
        with_password_limit_status(
            LoginView.as_view(template_name="rest_framework/login.html", authentication_form=LimitedAuthenticationForm)
        ),
    ),
    path("api-auth/", include("rest_framework.urls")),
]

handler400 = "messaging_app.errors.bad_request"
handler403 = "messaging_app.errors.permission_denied"
handler404 = "messaging_app.errors.not_found"
handler500 = "messaging_app.errors.server_error"
