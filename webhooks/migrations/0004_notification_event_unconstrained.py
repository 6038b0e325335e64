# A notification's event keeps its relation in Django but loses its foreign-key constraint in
# the database: deliveries 0010 partitions the event table by time, and a constraint could then
# only reference (id, created_at), a column more on every notification, and would make each
# removal of a day's events check every notification. The notifications go with their events
# instead: retention (`deliveries.services.retention`) deletes them before it drops or deletes
# the events, and Django's CASCADE still holds for every ORM delete.
#
# It runs before deliveries 0010, which cannot swap the event table while a constraint refers
# to it (should 0010 be renumbered at a merge, rename it below).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0009_test_mode"),
        ("webhooks", "0003_complained_events"),
    ]
    run_before = [
        ("deliveries", "0011_partition_history"),
    ]

    operations = [
        migrations.AlterField(
            model_name="notification",
            name="event",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="notifications",
                to="deliveries.event",
            ),
        ),
    ]
