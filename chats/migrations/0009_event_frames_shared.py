"""
A frame is stored once for all of its recipients (EventFrame); each recipient's Event keeps its
number and points to it. Existing events get a frame of their own each (without `event_id`).
"""
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def split_frames(apps, schema_editor):
    Event = apps.get_model("chats", "Event")
    EventFrame = apps.get_model("chats", "EventFrame")
    last = 0
    while True:
        batch = list(Event.objects.filter(id__gt=last).order_by("id")[:2000])
        if not batch:
            return
        for event in batch:
            frame = {key: value for key, value in event.frame.items() if key != "event_id"}
            event.payload_id = EventFrame.objects.create(frame=frame, created_at=event.created_at).pk
        Event.objects.bulk_update(batch, ["payload"])
        last = batch[-1].id


def join_frames(apps, schema_editor):
    Event = apps.get_model("chats", "Event")
    EventFrame = apps.get_model("chats", "EventFrame")
    for event in Event.objects.all().iterator():
        event.frame = {**EventFrame.objects.get(pk=event.payload_id).frame, "event_id": event.event_id}
        event.save(update_fields=["frame"])


class Migration(migrations.Migration):
    dependencies = [
        ("chats", "0008_merge_0007_presence_0007_reactions_pins"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventFrame",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("frame", models.JSONField()),
                ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
            ],
        ),
        migrations.AddField(
            model_name="event",
            name="payload",
            field=models.ForeignKey(
                db_constraint=False, db_index=False, null=True,
                on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="chats.eventframe",
            ),
        ),
        migrations.AlterField(model_name="event", name="frame", field=models.JSONField(null=True)),
        migrations.RunPython(split_frames, join_frames, elidable=True),
        migrations.RemoveField(model_name="event", name="frame"),
        migrations.AlterField(
            model_name="event",
            name="payload",
            field=models.ForeignKey(
                db_constraint=False, db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="chats.eventframe",
            ),
        ),
    ]
