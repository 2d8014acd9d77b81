"""
Background tasks (run by `make worker`; in-process after commit when no broker is configured).

Each is idempotent: it may run twice (acks_late redelivers a task whose worker died) and
does what is left to do. Failures are retried with exponential backoff and end in a state
the API shows (a webhook's delivery log, `is_active` false).
"""
from uuid import UUID

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from notifications import services


@shared_task(name="notifications.ping")
def ping(value: str = "pong") -> str:
    """A round trip through the broker and a worker (the integration tests and health checks)."""
    return value


@shared_task(bind=True, name="notifications.webhook_deliver", max_retries=None)
def webhook_deliver(self, webhook_id: str) -> int:
    """Send a webhook's undelivered events in order; how many were sent by this run."""
    run = services.webhook_deliver_pending(webhook_id=UUID(webhook_id))
    if self.request.is_eager:
        # In-process (no broker): never wait inside a request; the next event, or a worker,
        # tries again once the backoff has passed.
        return run.sent
    if run.failed:
        # This run's attempt failed: it alone retries, after the backoff. (A run refused because
        # the webhook is backing off does nothing: the failed run's retry is already scheduled,
        # and acks_late keeps it through a worker's death.)
        raise self.retry(countdown=max((run.retry_at - timezone.now()).total_seconds(), 0.0))
    if run.backing_off and self.request.retries:
        # This is the failed run's retry, come a little early (another worker's clock): wait again.
        raise self.retry(countdown=_seconds_until(run.retry_at))
    if run.busy_until is not None and cache.add(f"webhooks:takeover:{webhook_id}", 1, _seconds_until(run.busy_until)):
        # Another run holds the webhook; if its worker died, one check takes over once its lease has passed.
        self.apply_async((webhook_id,), countdown=_seconds_until(run.busy_until) + 1)
    return run.sent


def _seconds_until(moment) -> float:
    return max((moment - timezone.now()).total_seconds(), 1.0)


@shared_task(bind=True, name="notifications.push_conversation", max_retries=5)
def push_conversation(self, user_id: str, conversation_id: str, only: list[str] | None = None) -> int:
    """
    One Web Push of a conversation to a member who is away (notifications/push.py); how many
    browsers got it. Subscriptions that failed (not 404/410: those are dropped) are retried alone,
    with exponential backoff; a push is a hint, so after max_retries they are given up (logged).
    """
    from notifications import push

    run = push.push_conversation_send(
        user_id=UUID(user_id), conversation_id=UUID(conversation_id), only=only, clear_pending=not self.request.is_eager
    )
    if run.failed and not self.request.is_eager:
        raise self.retry(args=(user_id, conversation_id, run.failed), countdown=10 * 2 ** self.request.retries)
    return run.sent


@shared_task(name="notifications.email_digests")
def email_digests() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): an email digest to each user who is due one (notifications/digests.py)."""
    from notifications import digests

    return digests.email_digests_send()
