# The `complained` event type (deliveries 0009). An endpoint that takes every type there was
# (the default when it was created: "all of them") takes this one too; one that chose some
# types keeps its choice.

from django.contrib.postgres.fields import ArrayField
from django.db import migrations, models

import webhooks.models

#: Every event type before `complained`.
EARLIER_TYPES = (
    "accepted",
    "scheduled",
    "delivered",
    "deferred",
    "bounced",
    "failed",
    "suppressed",
    "cancelled",
)
_EVERY_EARLIER_TYPE = "ARRAY[{}]::varchar(12)[]".format(", ".join(f"'{t}'" for t in EARLIER_TYPES))


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0009_test_mode"),
        ("webhooks", "0002_client_in_accounts"),
    ]

    operations = [
        migrations.AlterField(
            model_name="endpoint",
            name="event_types",
            field=ArrayField(
                base_field=models.CharField(
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
                default=webhooks.models.all_event_types,
                size=None,
            ),
        ),
        migrations.RunSQL(
            sql=(
                "UPDATE webhooks_endpoint SET event_types = array_append(event_types, 'complained')"
                f" WHERE event_types @> {_EVERY_EARLIER_TYPE}"
                " AND NOT 'complained' = ANY(event_types)"
            ),
            reverse_sql=(
                "UPDATE webhooks_endpoint SET event_types = array_remove(event_types, 'complained')"
            ),
        ),
    ]
