"""
Group details and roles (docs/groups.md): services as in chats/services.py (one transaction
each, `@events.atomic`, the same lock order: users, conversations, messages, attachments).

Who may do what is decided here, under the conversation's row lock, from the actor's membership:

- A conversation of GROUP_MIN_PARTICIPANTS people or more is a group. Its owner and admins may
  change its title, description and avatar, pin and unpin, add and remove members; plain members
  may not (403). Only the owner names admins. Admins remove members, not the owner or other admins.
- A two-person conversation keeps the rules it always had: either person pins and adds people, and
  its owner (the creator) removes the other. It has no title, description or avatar.
- Anyone may leave. When the owner leaves, ownership passes to the admin who joined first, else to
  the member who joined first (a `participant.role_changed` event says so).
"""
from uuid import UUID

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, IntegerField, Value, When
from django.http import Http404

from attachments.models import Attachment
from chats import events, selectors
from chats.models import GROUP_MIN_PARTICIPANTS, Conversation, ConversationMembership, User

Role = ConversationMembership.Role
MANAGERS = (Role.OWNER, Role.ADMIN)
UNCHANGED = object()  # a field left out of a partial update


def is_group(conversation: Conversation) -> bool:
    return conversation.participant_count >= GROUP_MIN_PARTICIPANTS


def role_of(conversation: Conversation, user: User) -> str:
    """The user's role in the (locked) conversation; 404 if they take part no more."""
    role = (
        ConversationMembership.objects.filter(conversation=conversation, user=user)
        .values_list("role", flat=True)
        .first()
    )
    if role is None:
        raise Http404
    return role


def check_may_manage(conversation: Conversation, actor: User, what: str) -> str:
    """In a group, the owner and admins only (403 for members); in a two-person conversation, either person."""
    role = role_of(conversation, actor)
    if is_group(conversation) and role not in MANAGERS:
        raise PermissionDenied(f"Only the group's owner and admins can {what}.")
    return role


def check_may_remove(conversation: Conversation, role: str, target_role: str) -> None:
    """Removing someone else (leaving is always allowed): `role` is the actor's, `target_role` theirs."""
    if role == Role.OWNER:
        return
    if not is_group(conversation) or role != Role.ADMIN:
        raise PermissionDenied(
            "Only the group's owner and admins can remove other participants."
            if is_group(conversation)
            else "Only the conversation's owner can remove the other participant."
        )
    if target_role != Role.MEMBER:
        raise PermissionDenied("Admins cannot remove the owner or another admin.")


def pass_ownership(conversation: Conversation) -> None:
    """The owner left (the caller holds the lock; their membership is gone): oldest admin, else oldest member."""
    successor = (
        ConversationMembership.objects.filter(conversation=conversation)
        .order_by(
            Case(When(role=Role.ADMIN, then=Value(0)), default=Value(1), output_field=IntegerField()),
            "joined_at",
            "pk",
        )
        .first()
    )
    if successor is not None:
        successor.role = Role.OWNER
        successor.save(update_fields=["role"])
        events.participant_role_changed(conversation.pk, successor.user_id, Role.OWNER, changed_by=None)


def _avatar(conversation: Conversation, actor: User, attachment_id: UUID) -> Attachment:
    attachment = selectors.for_update(Attachment.objects.filter(pk=attachment_id, uploader=actor)).first()
    if attachment is None:
        raise ValidationError({"avatar": ["No upload of yours with this id."]})
    if attachment.message_id is not None:
        raise ValidationError({"avatar": ["This upload was sent with a message: upload the image again."]})
    if not attachment.is_image:
        raise ValidationError({"avatar": ["An avatar must be an image (PNG, JPEG, GIF or WebP)."]})
    if Conversation.objects.filter(avatar=attachment).exclude(pk=conversation.pk).exists():
        raise ValidationError({"avatar": ["This upload is another conversation's avatar: upload it again."]})
    return attachment


@events.atomic
def conversation_update(
    *, conversation: Conversation, actor: User, title=UNCHANGED, description=UNCHANGED, avatar_id=UNCHANGED
) -> Conversation:
    """
    A group's owner or an admin changes its title, description or avatar (an image they uploaded
    and have not sent; None removes it). A replaced avatar is deleted with its files.
    Everyone gets `conversation.updated` when something changed.
    """
    from attachments import services as attachment_services

    locked = selectors.conversation_for_update(conversation_id=conversation.pk)
    if not is_group(locked):
        role_of(locked, actor)  # a non-participant learns nothing (404)
        raise ValidationError(
            f"Only conversations of {GROUP_MIN_PARTICIPANTS} or more people have a title, description and avatar."
        )
    check_may_manage(locked, actor, "change its title, description and avatar")
    changed = []
    for field, value in (("title", title), ("description", description)):
        if value is not UNCHANGED and value != getattr(locked, field):
            setattr(locked, field, value)
            changed.append(field)
    replaced = None
    if avatar_id is not UNCHANGED and avatar_id != locked.avatar_id:
        replaced = locked.avatar_id
        locked.avatar = None if avatar_id is None else _avatar(locked, actor, avatar_id)
        changed.append("avatar")
    if not changed:
        return locked
    locked.full_clean(exclude=["created_by", "last_message", "avatar", "direct_key"], validate_unique=False)
    locked.save(update_fields=changed)
    if replaced is not None:
        attachment_services.attachments_delete(attachment_ids=[replaced])
    events.conversation_changed("conversation.updated", locked.pk)
    return locked


@events.atomic
def participant_set_role(
    *, conversation: Conversation, actor: User, user_id: UUID, role: str
) -> tuple[ConversationMembership, bool]:
    """
    The owner makes a participant an admin, or a plain member again. Returns (membership, changed).
    The owner's own role is not changed here (it passes on when they leave).
    """
    locked = selectors.conversation_for_update(conversation_id=conversation.pk)
    if role_of(locked, actor) != Role.OWNER:
        raise PermissionDenied("Only the conversation's owner can change roles.")
    if role not in (Role.ADMIN, Role.MEMBER):
        raise ValidationError({"role": ['A role is "admin" or "member".']})
    membership = ConversationMembership.objects.filter(conversation=locked, user_id=user_id).first()
    if membership is None:
        raise Http404("This user is not a participant.")
    if membership.role == Role.OWNER:
        raise ValidationError({"role": ["The owner's role cannot be changed: it passes on when they leave."]})
    if membership.role == role:
        return membership, False
    membership.role = role
    membership.save(update_fields=["role"])
    events.participant_role_changed(locked.pk, membership.user_id, role, changed_by=actor.pk)
    return membership, True
