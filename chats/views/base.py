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

    def get_extra_action_url_map(self):
        """The browsable API's "Extra Actions" menu. Its links are GETs, so actions without a GET
        stay out (opening one would be a 405 page); their forms are on their own URLs."""
        without_get = {
            self.__class__(**action.kwargs).get_view_name()
            for action in self.get_extra_actions()
            if "get" not in action.mapping
        }
        return {name: url for name, url in super().get_extra_action_url_map().items() if name not in without_get}
