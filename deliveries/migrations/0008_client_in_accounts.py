# The client model moved from `api` to `accounts` with its table (see accounts 0001): the foreign
# keys point at the same table as before, so only Django's state changes. A real AlterField would
# drop and re-create each constraint, re-checking every message and event under a lock.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("deliveries", "0007_poison_isolation"),
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
                        to="accounts.client",
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="client",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="messages",
                        to="accounts.client",
                    ),
                ),
                migrations.AlterField(
                    model_name="suppression",
                    name="client",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="suppressions",
                        to="accounts.client",
                    ),
                ),
                migrations.AlterField(
                    model_name="template",
                    name="client",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="templates",
                        to="accounts.client",
                    ),
                ),
            ],
            database_operations=[],
        )
    ]
