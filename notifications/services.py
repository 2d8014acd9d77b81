"""
Every write of notifications: registering and deleting webhooks, and delivering a webhook's
events (driven by the owner's event stream, chats/stream.py).

Delivery is cursor-driven: each webhook keeps `last_event_id`, the last of its owner's events
its endpoint acknowledged (2xx), and a delivery run sends the events after it, oldest first,
one at a time, advancing the cursor after each success. One run per webhook at a time (the
lease below), so events go out in order; a run that dies mid-way (a killed worker) leaves the
cursor where the last success put it, and the next run starts there: at least once, in order.
A failed attempt stops the run, and the webhook is not tried again before `next_attempt_at`
(exponential backoff); after WEBHOOKS_DISABLE_AFTER_FAILURES failures in a row it is disabled.
"""
import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from chats import stream
from chats.models import EventStream, User
from notifications import webhook_http
from notifications.models import Webhook, WebhookDelivery

logger = logging.getLogger(__name__)

# "Does anyone have an active webhook?": after each commit that recorded events, a cache hit
# answers it without a query. Cleared by every change of a webhook's activity; the TTL bounds
# how long a per-process cache (no REDIS_URL) may lag behind another process's change (the
# cursor means a late first task still sends every event since the webhook was made).
ANY_ACTIVE_CACHE_KEY = "webhooks:any-active"
ANY_ACTIVE_CACHE_SECONDS = 60
# Events read from the stream per query of a run.
BATCH = 50


def _invalid(field: str, message: str, code: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def any_active_webhooks() -> bool:
    found = cache.get(ANY_ACTIVE_CACHE_KEY)
    if found is None:
        found = Webhook.objects.filter(is_active=True).exists()
        cache.set(ANY_ACTIVE_CACHE_KEY, found, ANY_ACTIVE_CACHE_SECONDS)
    return found


def _activity_changed() -> None:
    transaction.on_commit(lambda: cache.delete(ANY_ACTIVE_CACHE_KEY), robust=True)


@transaction.atomic
def webhook_create(*, owner: User, url: str, description: str = "") -> Webhook:
    """
    Registers an endpoint for the owner's events from now on (its cursor starts at their
    stream's position). Refused (400): a URL that is not https (unless WEBHOOKS_ALLOW_HTTP), names
    a non-public address (unless WEBHOOKS_ALLOW_PRIVATE), or past WEBHOOKS_MAX_PER_USER.
    """
    try:
        webhook_http.check_url(url)
    except webhook_http.AddressRefused as exc:
        raise _invalid("url", str(exc), "url_refused") from None
    # The owner's row, locked: two registrations at once cannot both pass the limit.
    User.objects.select_for_update().filter(pk=owner.pk).exists()
    if Webhook.objects.filter(owner=owner).count() >= settings.WEBHOOKS_MAX_PER_USER:
        raise _invalid("url", f"At most {settings.WEBHOOKS_MAX_PER_USER} webhooks per user.", "too_many_webhooks")
    webhook = Webhook(
        owner=owner, url=url, description=description, secret="whsec_" + secrets.token_urlsafe(32),
        last_event_id=stream.position(owner.pk),
    )
    webhook.full_clean()
    webhook.save()
    _activity_changed()
    return webhook


@transaction.atomic
def webhook_delete(*, webhook: Webhook) -> None:
    """Deletes the webhook and its delivery log; a run under way stops before its next event."""
    webhook.delete()
    _activity_changed()


# --- Scheduling ----------------------------------------------------------------------------------
def webhooks_notify(sender=None, *, recipients: Iterable[UUID], **kwargs) -> None:
    """
    After a commit that recorded events (chats.events.events_committed): a delivery task for
    each active webhook of the recipients. No query at all while nobody has an active webhook;
    else one.
    """
    if not any_active_webhooks():
        return
    ids = list(
        Webhook.objects.filter(owner_id__in=list(recipients), is_active=True).values_list("webhook_id", flat=True)
    )
    _enqueue(ids)


def webhooks_resume() -> int:
    """A delivery task for every active webhook behind its owner's stream (a worker starting); how many."""
    position = Subquery(EventStream.objects.filter(user_id=OuterRef("owner_id")).values("last_event_id")[:1])
    ids = list(
        Webhook.objects.filter(is_active=True)
        .annotate(position=position)
        .filter(position__gt=F("last_event_id"))
        .values_list("webhook_id", flat=True)
    )
    _enqueue(ids)
    return len(ids)


def _enqueue(webhook_ids: list[UUID]) -> None:
    from notifications.tasks import webhook_deliver

    for webhook_id in webhook_ids:
        transaction.on_commit(lambda webhook_id=webhook_id: webhook_deliver.delay(str(webhook_id)), robust=True)


# --- Delivery ------------------------------------------------------------------------------------
@dataclass
class DeliveryRun:
    """
    What one run did. failed: an attempt failed, retry at retry_at. backing_off: not tried,
    an earlier run failed and retries at retry_at. busy_until: another run holds the webhook.
    """

    sent: int = 0
    failed: bool = False
    backing_off: bool = False
    retry_at: datetime | None = None
    busy_until: datetime | None = None
    disabled: bool = False


def backoff_seconds(failures: int) -> float:
    """Wait after the n-th failure in a row: base * 2**(n-1), capped."""
    return min(settings.WEBHOOKS_RETRY_BASE_SECONDS * 2 ** max(failures - 1, 0), settings.WEBHOOKS_RETRY_MAX_SECONDS)


def _claim(webhook_id: UUID) -> tuple[datetime | None, DeliveryRun | None]:
    """Take the webhook's lease (one UPDATE); else why not, as a finished run."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS)
    taken = (
        Webhook.objects.filter(pk=webhook_id, is_active=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(lease_until=lease)
    )
    if taken:
        return lease, None
    state = Webhook.objects.filter(pk=webhook_id).values("is_active", "lease_until", "next_attempt_at").first()
    if state is None or not state["is_active"]:
        return None, DeliveryRun(disabled=state is not None)
    if state["lease_until"] is not None and state["lease_until"] >= now:
        return None, DeliveryRun(busy_until=state["lease_until"])
    return None, DeliveryRun(backing_off=True, retry_at=state["next_attempt_at"])


def _renew(webhook_id: UUID, lease: datetime) -> datetime | None:
    renewed = timezone.now() + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS)
    if Webhook.objects.filter(pk=webhook_id, lease_until=lease, is_active=True).update(lease_until=renewed):
        return renewed
    return None  # lost (expired and taken over, deleted or disabled): stop sending


def _release(webhook_id: UUID, lease: datetime) -> None:
    Webhook.objects.filter(pk=webhook_id, lease_until=lease).update(lease_until=None)


def webhook_deliver_pending(*, webhook_id: UUID) -> DeliveryRun:
    """Send the webhook's undelivered events in order until it is caught up or an attempt fails."""
    run = DeliveryRun()
    while True:
        lease, refused = _claim(webhook_id)
        if lease is None:
            refused.sent = run.sent
            return refused
        try:
            lease = _send_until_caught_up(webhook_id, lease, run)
        finally:
            if lease is not None:
                _release(webhook_id, lease)
        if run.failed or run.disabled or lease is None:
            return run
        # Tasks that came while this run held the lease found it busy and left their events to
        # it: look once more now that it is released.
        webhook = Webhook.objects.filter(pk=webhook_id, is_active=True).values("owner_id", "last_event_id").first()
        if webhook is None or stream.position(webhook["owner_id"]) <= webhook["last_event_id"]:
            return run


def _send_until_caught_up(webhook_id: UUID, lease: datetime, run: DeliveryRun) -> datetime | None:
    while True:
        webhook = Webhook.objects.filter(pk=webhook_id).first()
        if webhook is None:
            return None
        frames = stream.after(webhook.owner_id, webhook.last_event_id, BATCH)
        if not frames:
            return lease
        for frame in frames:
            if not _send_one(webhook, frame, run):
                return lease
            run.sent += 1
            lease = _renew(webhook_id, lease)
            if lease is None:
                return None


def _send_one(webhook: Webhook, frame: dict, run: DeliveryRun) -> bool:
    event_id = frame["event_id"]
    body = json.dumps(frame, separators=(",", ":")).encode()
    outcome = webhook_http.post(webhook.url, body, {
        webhook_http.SIGNATURE_HEADER: webhook_http.sign(webhook.secret, body),
        "X-Messaging-Webhook-Id": str(webhook.pk),
        "X-Messaging-Event-Id": str(event_id),
        "X-Messaging-Event-Type": str(frame.get("type", "")),
    })
    now = timezone.now()
    with transaction.atomic():
        delivery, _ = WebhookDelivery.objects.get_or_create(
            webhook=webhook, event_id=event_id, defaults={"event_type": str(frame.get("type", ""))[:64]}
        )
        delivery.attempts += 1
        delivery.response_code = outcome.response_code
        delivery.last_error = outcome.error[:300]
        delivery.last_attempt_at = now
        if outcome.ok:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
            delivery.delivered_at = now
            delivery.save()
            # Only forward: a run that lost its lease cannot move the cursor back.
            Webhook.objects.filter(pk=webhook.pk, last_event_id__lt=event_id).update(
                last_event_id=event_id, consecutive_failures=0, next_attempt_at=None
            )
            webhook.last_event_id = event_id
            return True
        failures = webhook.consecutive_failures + 1
        if failures >= settings.WEBHOOKS_DISABLE_AFTER_FAILURES:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.save()
            Webhook.objects.filter(pk=webhook.pk).update(
                consecutive_failures=failures, is_active=False, next_attempt_at=None,
                disabled_reason=f"Disabled after {failures} failed attempts in a row (last: {outcome.error})"[:200],
            )
            _activity_changed()
            run.disabled = True
            logger.warning("webhook %s disabled after %d failures: %s", webhook.pk, failures, outcome.error)
            return False
        delivery.status = WebhookDelivery.Status.PENDING
        delivery.save()
        run.failed = True
        run.retry_at = now + timedelta(seconds=backoff_seconds(failures))
        Webhook.objects.filter(pk=webhook.pk).update(consecutive_failures=failures, next_attempt_at=run.retry_at)
        logger.info("webhook %s event %s failed (%s); retry at %s", webhook.pk, event_id, outcome.error, run.retry_at)
        return False
