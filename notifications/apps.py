from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self):
        from celery.signals import worker_ready

        from chats import events
        from notifications import push, services

        # After each commit that recorded events: their recipients' webhooks get a delivery task.
        events.events_committed.connect(services.webhooks_notify, dispatch_uid="notifications.webhooks")
        # After each new message: batched Web Push to the members who are away (notifications/push.py).
        events.message_created.connect(push.on_message_created, dispatch_uid="notifications.push")
        # A worker starting (after a crash, a deploy) resumes every webhook left behind its owner's stream.
        worker_ready.connect(_resume_webhooks, dispatch_uid="notifications.resume", weak=False)


def _resume_webhooks(**kwargs):
    from notifications import services

    services.webhooks_resume()
