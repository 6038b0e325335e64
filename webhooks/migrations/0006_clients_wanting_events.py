# `Client.wants_events` (accounts 0003) set for every client with an enabled endpoint. An
# endpoint the previous release creates after this runs is caught by the next webhook tick
# (``clients_wanting_events_mark``).

from django.db import migrations

MARK = """
UPDATE api_client c SET wants_events = true
WHERE EXISTS (SELECT 1 FROM webhooks_endpoint e WHERE e.client_id = c.id AND e.enabled)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_client_wants_events"),
        ("webhooks", "0005_unsubscribed_events"),
    ]

    operations = [migrations.RunSQL(MARK, migrations.RunSQL.noop)]
