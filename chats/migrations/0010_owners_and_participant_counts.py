"""
Existing conversations get what the services keep from now on (chats/services_groups.py):
`participant_count`, and an owner: the creator if still a participant, else the participant
who joined first (by joined_at, then membership id). Everyone else stays a member.
"""
from django.db import migrations
from django.db.models import Count


def forwards(apps, schema_editor):
    Conversation = apps.get_model("chats", "Conversation")
    Membership = apps.get_model("chats", "ConversationMembership")
    counts = Conversation.objects.annotate(people=Count("memberships")).values_list("pk", "created_by_id", "people")
    for conversation_id, creator_id, people in counts.iterator():
        Conversation.objects.filter(pk=conversation_id).update(participant_count=people)
        members = Membership.objects.filter(conversation_id=conversation_id)
        owner = members.filter(user_id=creator_id).first() if creator_id else None
        owner = owner or members.order_by("joined_at", "pk").first()
        if owner is not None:
            members.filter(pk=owner.pk).update(role="owner")


def backwards(apps, schema_editor):
    apps.get_model("chats", "ConversationMembership").objects.update(role="member")


class Migration(migrations.Migration):

    dependencies = [
        ("chats", "0009_groups_and_roles"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
