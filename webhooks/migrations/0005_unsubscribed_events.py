# The `unsubscribed` event type (deliveries 0012). An endpoint that takes every type there was
# takes this one too; one that chose some types keeps its choice.

from django.contrib.postgres.fields import ArrayField
from django.db import migrations, models

import webhooks.models

#: Every event type before `unsubscribed`.
EARLIER_TYPES = (
    "accepted",
    "scheduled",
    "delivered",
    "deferred",
    "bounced",
    "failed",
    "suppressed",
    "cancelled",
    "complained",
)
_EVERY_EARLIER_TYPE = "ARRAY[{}]::varchar(12)[]".format(", ".join(f"'{t}'" for t in EARLIER_TYPES))


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0012_message_unsubscribe"),
        ("webhooks", "0004_notification_event_unconstrained"),
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
                        ("unsubscribed", "unsubscribed"),
                    ],
                    max_length=12,
                ),
                default=webhooks.models.all_event_types,
                size=None,
            ),
        ),
        migrations.RunSQL(
            sql=(
                "UPDATE webhooks_endpoint"
                " SET event_types = array_append(event_types, 'unsubscribed')"
                f" WHERE event_types @> {_EVERY_EARLIER_TYPE}"
                " AND NOT 'unsubscribed' = ANY(event_types)"
            ),
            reverse_sql=(
                "UPDATE webhooks_endpoint"
                " SET event_types = array_remove(event_types, 'unsubscribed')"
            ),
        ),
    ]
