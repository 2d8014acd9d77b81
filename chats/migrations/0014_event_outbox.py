"""
The event outbox (chats/outbox.py): the events of a change to many people are queued as one row
per conversation and numbered into the recipients' streams after the commit, off the request.
"""
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chats", "0013_merge_membership_settings"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventOutbox",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("key", models.UUIDField()),
                ("runs", models.JSONField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "indexes": [models.Index(fields=["key", "id"], name="event_outbox_key_id_idx")],
            },
        ),
    ]
