from django.urls import reverse as django_reverse
from rest_framework import permissions, routers
from rest_framework.reverse import reverse

AUTHENTICATION = (
    "Everything but registering (POST /api/users/) and the token endpoints needs credentials: "
    "a JWT (POST /api/token/ with {\"email\", \"password\"}, then the header "
    "'Authorization: Bearer <access>'), HTTP Basic (email:password), or the browser session "
    "(log in at the 'login' link; this page then uses it)."
)


class ApiRootView(routers.APIRootView):
    """
    What the API offers and how to log in. Open to everyone; every endpoint it lists
    still needs credentials (see `authentication`).
    """

    permission_classes = [permissions.AllowAny]

    def get_view_name(self):
        return "messaging_app API"

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)

        def link(name):
            return reverse(name, request=request)

        def page(name):
            # Not an API view: no `?format=` carried over from this request (it would be a 404).
            return request.build_absolute_uri(django_reverse(name))

        # Only pages a GET can open are links; the POST-only endpoints are named in the text.
        response.data.update(
            {
                "me": link("user-me"),
                "ping": link("ping"),
                "events": link("events"),
                "presence": link("presence"),
                "schema": page("schema"),
                "swagger_ui": page("swagger-ui"),
                "redoc": page("redoc"),
                "websocket_protocol": page("websocket-protocol"),
                "login": page("rest_framework:login") + "?next=/api/",
                "authentication": AUTHENTICATION,
            }
        )
        return response
