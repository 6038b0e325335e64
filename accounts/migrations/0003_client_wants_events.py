# `Client.wants_events`: False for every client until webhooks 0006 sets it for those with an
# enabled endpoint. A default in the database too, so the previous release, serving while
# migrations run, still inserts clients.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_test_mode"),
    ]

    operations = [
        migrations.AddField(
            model_name="client",
            name="wants_events",
            field=models.BooleanField(
                db_default=False,
                default=False,
                editable=False,
                help_text="Has a webhook endpoint that may want its events (kept by webhooks).",
            ),
        ),
    ]
