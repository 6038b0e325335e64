# One-click unsubscribe (RFC 8058): a flag on messages (null: on for `low` priority only) and the
# `unsubscribed` event type.
#
# The column is nullable without a default, so the previous release, serving while this runs,
# goes on writing rows without it (they read as null) and PostgreSQL adds it without rewriting
# the table.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0011_partition_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="unsubscribe",
            field=models.BooleanField(blank=True, default=None, null=True),
        ),
        migrations.AlterField(
            model_name="event",
            name="type",
            field=models.CharField(
                choices=[
                    ("accepted", "accepted"),
                    ("scheduled", "scheduled"),
                    ("delivered", "delivered"),
                    ("deferred", "deferred"),
                    ("bounced", "bounced"),
                    ("failed", "failed"),
                    ("suppressed", "suppressed"),
                    ("cancelled", "cancelled"),
                    ("complained", "complained"),
                    ("unsubscribed", "unsubscribed"),
                ],
                max_length=12,
            ),
        ),
    ]
