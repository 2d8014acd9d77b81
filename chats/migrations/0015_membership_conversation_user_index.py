import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """
    "Who is in this conversation" read from one index, (conversation, user), instead of the
    conversation's FK index and a row lookup per member. The index comes first: MySQL/MariaDB
    keep a foreign key's column indexed, and it then covers the FK.
    """

    dependencies = [
        ("chats", "0014_event_outbox"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="conversationmembership",
            index=models.Index(fields=["conversation", "user"], name="membership_conv_user"),
        ),
        migrations.AlterField(
            model_name="conversationmembership",
            name="conversation",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memberships",
                to="chats.conversation",
            ),
        ),
    ]
