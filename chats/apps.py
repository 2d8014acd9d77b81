from django.apps import AppConfig


class ChatsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chats"

    def ready(self):
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save

        from chats import stream
        from chats.models import User

        # Django's logout (the browsable API's and the admin's) has no other hook; the service does the work.
        user_logged_out.connect(_session_logged_out, dispatch_uid="chats.session_logout")
        # Every way a user is made (registration, the admin, createsuperuser) gives them a stream row.
        post_save.connect(stream.user_saved, sender=User, dispatch_uid="chats.event_stream")


def _session_logged_out(sender, request, user, **kwargs):
    from chats import services

    if user is not None:
        services.user_session_logout(user=user, session_key=request.session.session_key)
