# Each table keeps a composite index that starts with client_id (message_client_created,
# event_client_created); the foreign key's own index only cost a write per insert. Only the index
# is dropped: letting Django re-create the foreign key would re-check every row under a lock.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0003_rate_counter"),
        ("deliveries", "0005_metadata_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="client",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="api.client",
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="client",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="messages",
                        to="api.client",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS deliveries_event_client_id_2b3fcd08",
                    "CREATE INDEX deliveries_event_client_id_2b3fcd08"
                    " ON deliveries_event (client_id)",
                ),
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS deliveries_message_client_id_8e8d7d6e",
                    "CREATE INDEX deliveries_message_client_id_8e8d7d6e"
                    " ON deliveries_message (client_id)",
                ),
            ],
        )
    ]
