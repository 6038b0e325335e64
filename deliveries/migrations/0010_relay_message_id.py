# The relay's message id on each delivery (from its 250 reply to DATA), and the partial index
# ESP events are matched through.
#
# The column defaults in the database, so the previous release, serving while this runs, goes on
# writing rows without it (PostgreSQL adds a column with a constant default without rewriting
# the table). The index is built CONCURRENTLY, hence a migration outside a transaction: no row
# matches yet, but a plain CREATE INDEX would block every settle while it reads the table.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("deliveries", "0009_test_mode"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="relay_message_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=128),
        ),
        AddIndexConcurrently(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("relay_message_id", ""), _negated=True),
                fields=["relay_message_id"],
                name="delivery_relay_message_id",
            ),
        ),
    ]
