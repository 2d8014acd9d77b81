"""
Web Push (VAPID, RFC 8030/8291/8292 through pywebpush): browser subscriptions, and one push per
conversation to members who are not connected when messages reach them.

Scheduling (after the commit of each message.created, chats.events.message_created): the
recipients who may be notified (not the sender, not muted, their level allows it: preferences.
should_notify) and have a subscription, minus those with an open socket (chats.socket_slots),
each get one task per conversation, `push_conversation`, run PUSH_BATCH_SECONDS later: the first
message of a burst sets a cache key (cache.add) that the next ones find, so ten quick messages
make one push. The task clears the key first, then checks again (connected since? read since?
muted since?) and pushes the member's unread count, the last sender and, if they opted in, the
text. Nothing is queried while nobody has a subscription (a cached flag, as for webhooks).

A push service answering 404 or 410 says the subscription is gone: it is deleted. Other failures
are logged and retried by the task (backoff); a push is a hint, never the only copy of anything.

SSRF: endpoints are checked like webhook URLs (https, public addresses; PUSH_ALLOW_HTTP /
PUSH_ALLOW_PRIVATE relax it for development and tests) at registration and again before each send
(every address the host resolves to).
"""
import base64
import binascii
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction

from chats.models import ConversationMembership, Message, User
from notifications import preferences, webhook_http
from notifications.models import PushSubscription

logger = logging.getLogger(__name__)

ANY_SUBSCRIPTION_CACHE_KEY = "push:any-subscription"
ANY_SUBSCRIPTION_CACHE_SECONDS = 60


def _invalid(field: str, message: str, code: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _check_endpoint(endpoint: str) -> None:
    webhook_http.check_url(endpoint, allow_http=settings.PUSH_ALLOW_HTTP, allow_private=settings.PUSH_ALLOW_PRIVATE)


# --- Subscriptions ---------------------------------------------------------------------------------
@transaction.atomic
def subscription_register(*, user: User, endpoint: str, p256dh: str, auth: str) -> tuple[PushSubscription, bool]:
    """Registers a browser for `user` (or updates its keys); (subscription, created)."""
    try:
        _check_endpoint(endpoint)
    except webhook_http.AddressRefused as exc:
        raise _invalid("endpoint", str(exc).replace("Webhook URLs", "Push endpoints"), "url_refused") from None
    for name, value, size in (("p256dh", p256dh, 65), ("auth", auth, 16)):
        try:
            decoded = _b64decode(value)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != size or (name == "p256dh" and decoded[:1] != b"\x04"):
            raise _invalid(f"keys.{name}", f"Not a base64url {name} key of the browser's subscription.", "invalid")
    User.objects.select_for_update().filter(pk=user.pk).exists()  # one registration at a time per user
    existing = PushSubscription.objects.filter(user=user, endpoint=endpoint).first()
    if existing is not None:
        existing.p256dh, existing.auth = p256dh, auth
        existing.save(update_fields=["p256dh", "auth"])
        return existing, False
    if PushSubscription.objects.filter(user=user).count() >= settings.PUSH_MAX_SUBSCRIPTIONS_PER_USER:
        raise _invalid(
            "endpoint", f"At most {settings.PUSH_MAX_SUBSCRIPTIONS_PER_USER} push subscriptions per user.",
            "too_many_subscriptions",
        )
    subscription = PushSubscription(user=user, endpoint=endpoint, p256dh=p256dh, auth=auth)
    subscription.full_clean()
    subscription.save()
    transaction.on_commit(lambda: cache.delete(ANY_SUBSCRIPTION_CACHE_KEY), robust=True)
    return subscription, True


def subscription_delete(*, subscription: PushSubscription) -> None:
    subscription.delete()


def subscription_for_user(*, user: User, subscription_id) -> PushSubscription | None:
    try:
        subscription_id = UUID(str(subscription_id))
    except ValueError:
        return None
    return PushSubscription.objects.filter(user=user, pk=subscription_id).first()


def any_subscriptions() -> bool:
    found = cache.get(ANY_SUBSCRIPTION_CACHE_KEY)
    if found is None:
        found = PushSubscription.objects.exists()
        cache.set(ANY_SUBSCRIPTION_CACHE_KEY, found, ANY_SUBSCRIPTION_CACHE_SECONDS)
    return found


def vapid_public_key() -> str | None:
    """The applicationServerKey browsers subscribe with (base64url), or None when push is off."""
    if not settings.PUSH_VAPID_PRIVATE_KEY:
        return None
    from cryptography.hazmat.primitives import serialization
    from py_vapid import Vapid

    key = Vapid.from_string(private_key=settings.PUSH_VAPID_PRIVATE_KEY).public_key
    raw = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- Scheduling ------------------------------------------------------------------------------------
def _pending_key(user_id, conversation_id) -> str:
    return f"push:pending:{user_id}:{conversation_id}"


def _pending_seconds() -> float:
    # With a worker the task clears the key when it runs (a minute of slack for a busy worker);
    # in-process the key alone makes the window.
    return settings.PUSH_BATCH_SECONDS + (0 if settings.CELERY_TASK_ALWAYS_EAGER else 60)


def push_candidates(*, conversation_id, sender_id) -> list[UUID]:
    """Members of the conversation a new message may push to: one query (not connected: checked after)."""
    rows = (
        ConversationMembership.objects.filter(conversation_id=conversation_id, muted=False)
        .exclude(user_id=sender_id)
        .exclude(notify_level=preferences.LEVEL_NONE)
        .filter(user__push_subscriptions__isnull=False)
        .values_list("user_id", "notify_level")
        .distinct()
    )
    # No message carries mentions yet: "mentions" members are not notified (preferences.should_notify).
    return [user_id for user_id, level in rows if preferences.should_notify(muted=False, level=level, mentioned=False)]


def on_message_created(sender=None, *, message: Message, **kwargs) -> None:
    """After the commit of a new message: a batched push task per member who is away (see the module)."""
    if not settings.PUSH_VAPID_PRIVATE_KEY or not any_subscriptions():
        return
    from chats.socket_slots import connected_now
    from notifications.tasks import push_conversation

    candidates = push_candidates(conversation_id=message.conversation_id, sender_id=message.sender_id)
    away = [user_id for user_id in candidates if user_id not in connected_now(candidates)] if candidates else []
    for user_id in away:
        # The first message of a burst schedules; the others find the key (until the task takes it).
        if cache.add(_pending_key(user_id, message.conversation_id), 1, _pending_seconds()):
            push_conversation.apply_async(
                (str(user_id), str(message.conversation_id)), countdown=settings.PUSH_BATCH_SECONDS
            )


# --- Sending ---------------------------------------------------------------------------------------
@dataclass
class PushRun:
    sent: int = 0
    dropped: int = 0  # subscriptions the push service said are gone (404/410)
    failed: list = field(default_factory=list)  # ids of subscriptions that failed otherwise (retried)
    skipped: str = ""  # why nothing was sent


def _payload(membership: ConversationMembership, include_text: bool) -> dict:
    last = (
        Message.objects.filter(conversation_id=membership.conversation_id, is_deleted=False)
        .exclude(sender_id=membership.user_id)
        .select_related("sender")
        .order_by("-sent_at")
        .first()
    )
    payload = {
        "type": "messages",
        "conversation_id": str(membership.conversation_id),
        "unread_count": membership.unread_count,
        "sender": None if last is None else {"user_id": str(last.sender_id), "first_name": last.sender.first_name},
    }
    if include_text and last is not None:
        payload["message_id"] = str(last.pk)
        payload["message_body"] = last.message_body[:1000]
    return payload


def push_conversation_send(
    *, user_id, conversation_id, only: list[str] | None = None, clear_pending: bool = True
) -> PushRun:
    """
    One push of a conversation's unread messages to each of the member's browsers (see the module);
    `only`: these subscriptions (a retry of those that failed). `clear_pending`: let the next message
    start a new batch now (a worker, after the countdown); in-process (no broker: the task runs at
    once, without its countdown) the key is left to expire after PUSH_BATCH_SECONDS instead, so a
    burst still makes one push.
    """
    from chats.socket_slots import connected_now

    if clear_pending:
        cache.delete(_pending_key(user_id, conversation_id))
    membership = ConversationMembership.objects.filter(conversation_id=conversation_id, user_id=user_id).first()
    if membership is None:
        return PushRun(skipped="not a participant any more")
    if not preferences.should_notify(muted=membership.muted, level=membership.notify_level, mentioned=False):
        return PushRun(skipped="muted or not at this level")
    if membership.unread_count == 0:
        return PushRun(skipped="read already")
    prefs = preferences.preferences_for(user=User(pk=membership.user_id))
    if not prefs.push_enabled:
        return PushRun(skipped="push off")
    if connected_now([membership.user_id]):
        return PushRun(skipped="connected")
    body = json.dumps(_payload(membership, prefs.push_include_text), separators=(",", ":"))
    subscriptions = PushSubscription.objects.filter(user_id=user_id)
    if only is not None:
        subscriptions = subscriptions.filter(pk__in=only)
    return _send_all(subscriptions, body)


def _send_all(subscriptions: Iterable[PushSubscription], body: str) -> PushRun:
    from pywebpush import WebPushException, webpush

    run = PushRun()
    for subscription in subscriptions:
        try:
            _check_endpoint(subscription.endpoint)
            parts = urlsplit(subscription.endpoint)
            webhook_http.resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                 allow_private=settings.PUSH_ALLOW_PRIVATE)
        except (webhook_http.AddressRefused, ValueError) as exc:
            logger.warning("push to %s refused: %s", subscription.pk, exc)
            run.dropped += 1  # a refused address stays refused: not retried
            subscription.delete()
            continue
        try:
            webpush(
                subscription.as_subscription_info(), data=body,
                vapid_private_key=settings.PUSH_VAPID_PRIVATE_KEY,
                vapid_claims={"sub": settings.PUSH_VAPID_SUBJECT},
                ttl=settings.PUSH_TTL_SECONDS, timeout=settings.WEBHOOKS_TIMEOUT,
            )
            run.sent += 1
        except WebPushException as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (404, 410):
                subscription.delete()
                run.dropped += 1
            else:
                logger.warning("push to %s failed: %s", subscription.pk, exc)
                run.failed.append(str(subscription.pk))
        except Exception as exc:  # the network: refused, timeout, TLS
            logger.warning("push to %s failed: %s: %s", subscription.pk, type(exc).__name__, exc)
            run.failed.append(str(subscription.pk))
    return run
