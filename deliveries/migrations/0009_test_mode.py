# Test-mode mail: a flag on messages and on their events, the `complained` event type, and the
# small partial indexes a test-mode key's lists read.
#
# The columns default in the database, so the previous release, serving while this runs, goes
# on writing rows without them (PostgreSQL adds a column with a constant default without
# rewriting the table). The indexes are built CONCURRENTLY, hence a migration outside a
# transaction: a plain CREATE INDEX would block every accept and every settle for as long as it
# reads the two biggest tables, although no row matches yet.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("deliveries", "0008_client_in_accounts"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="test_mode",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="event",
            name="test_mode",
            field=models.BooleanField(db_default=False, default=False),
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
                ],
                max_length=12,
            ),
        ),
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(
                condition=models.Q(("test_mode", True)),
                fields=["client", "-created_at"],
                name="message_client_test_created",
            ),
        ),
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(
                condition=models.Q(("test_mode", True)),
                fields=["client", "created_at"],
                name="event_client_test_created",
            ),
        ),
    ]
