from rest_framework import viewsets


class ScopedViewSet(viewsets.GenericViewSet):
    """Every queryset is scoped to the requesting user by `scoped_queryset()`."""

    model = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return self.model.objects.none()
        return self.scoped_queryset()

    def scoped_queryset(self):
        raise NotImplementedError
