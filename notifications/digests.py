"""
Email digests: an email listing a user's unread messages once they have been offline longer than
their `email_digest_delay_minutes`, sent through Django's email backend (SMTP in production).

`email_digests_send()` runs periodically (Celery beat: CELERY_BEAT_SCHEDULE, or cron with
`manage.py send_email_digests`). For each candidate (unread messages in conversations they have
not muted, at level "all"), under a lock on their preferences row: if they are offline long enough
(no open socket, and last seen / logged in before now - delay) it lists the unread messages from
others sent after their previous digest's `through`, sends one email, and records an EmailDigest
whose `through` is the newest listed message: a message is never in two digests, even if this runs
twice at once (the lock) or again after a crash (a failed send rolls the record back).

The email carries an unsubscribe link (a signed token, no login): it turns `email_digest_enabled` off.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from chats.models import ConversationMembership, Message, User
from notifications import preferences
from notifications.models import EmailDigest, NotificationPreferences

logger = logging.getLogger(__name__)

UNSUBSCRIBE_SALT = "notifications.digest.unsubscribe"
MAX_MESSAGES = 50  # listed in one email (the rest are counted)


def unsubscribe_token(user: User) -> str:
    return signing.dumps(str(user.pk), salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_url(user: User) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("digest-unsubscribe", args=[unsubscribe_token(user)])


def unsubscribe(token: str) -> bool:
    """Turns the token's user's digests off; False for a token that is not ours (or altered)."""
    try:
        user_id = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return False
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return False
    preferences.preferences_update(user=user, email_digest_enabled=False)
    return True


def _candidates() -> list:
    """Users with unread messages they may be told about: one query."""
    return list(
        ConversationMembership.objects.filter(unread_count__gt=0, muted=False, notify_level=preferences.LEVEL_ALL)
        .exclude(user__notification_preferences__email_digest_enabled=False)
        .filter(user__is_active=True)
        .values_list("user_id", flat=True)
        .distinct()
    )


def email_digests_send() -> int:
    """One digest to each user who is due one (see the module); how many were sent."""
    sent = 0
    for user_id in _candidates():
        try:
            sent += digest_send(user_id=user_id)
        except Exception:  # one user's failure (SMTP down) must not stop the others; retried next run
            logger.exception("email digest for %s failed", user_id)
    return sent


@transaction.atomic
def digest_send(*, user_id) -> int:
    """The user's digest if they are due one: 1 if sent, else 0."""
    from chats.socket_slots import connected_now

    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not user.email:
        return 0
    prefs, _ = NotificationPreferences.objects.select_for_update().get_or_create(user=user)  # one run per user
    if not prefs.email_digest_enabled:
        return 0
    now = timezone.now()
    offline_since = max(filter(None, (user.last_seen_at, user.last_login)), default=None)
    if offline_since is not None and offline_since > now - timedelta(minutes=prefs.email_digest_delay_minutes):
        return 0
    if connected_now([user.pk]):
        return 0
    previous = EmailDigest.objects.filter(user=user).values_list("through", flat=True).first()
    memberships = ConversationMembership.objects.filter(
        user=user, unread_count__gt=0, muted=False, notify_level=preferences.LEVEL_ALL
    )
    unread = Q()
    for membership in memberships:
        after = Q(conversation_id=membership.conversation_id)
        if membership.last_read_at is not None:
            after &= Q(sent_at__gt=membership.last_read_at)
        unread |= after
    if not unread:
        return 0
    messages = Message.objects.filter(unread, is_deleted=False).exclude(sender=user)
    if previous is not None:
        messages = messages.filter(sent_at__gt=previous)
    total = messages.count()
    if not total:
        return 0
    listed = list(messages.select_related("sender").order_by("sent_at")[:MAX_MESSAGES])
    through = max(message.sent_at for message in listed) if total <= MAX_MESSAGES else _newest(messages)
    _email(user, listed, total).send()
    EmailDigest.objects.create(user=user, sent_at=now, through=through, message_count=total)
    return 1


def _newest(messages):
    return messages.order_by("-sent_at").values_list("sent_at", flat=True).first()


def _email(user: User, listed: list, total: int) -> EmailMessage:
    link = unsubscribe_url(user)
    lines = [f"Hello {user.first_name},", "", f"You have {total} unread message{'s' if total != 1 else ''}:", ""]
    for message in listed:
        text = message.message_body or "(an attachment)"
        lines.append(f"- {message.sender.first_name} {message.sender.last_name}: {text[:300]}")
    if total > len(listed):
        lines.append(f"... and {total - len(listed)} more.")
    lines += ["", f"Stop these emails: {link}"]
    return EmailMessage(
        subject=f"{total} unread message{'s' if total != 1 else ''}",
        body="\n".join(lines),
        to=[user.email],
        headers={"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
