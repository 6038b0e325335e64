# Test-mode API keys, and idempotency records kept apart by mode.
#
# The columns default in the database, so the previous release, serving while this runs, goes on
# inserting keys and records without them (PostgreSQL adds a column with a constant default
# without rewriting the table). The new unique index is built before the old one goes, in this
# migration's one transaction: the records are never without one.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="test_mode",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="Its mail is settled by the simulator, never sent. Chosen when created.",
            ),
        ),
        migrations.AddField(
            model_name="idempotencyrecord",
            name="test_mode",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddConstraint(
            model_name="idempotencyrecord",
            constraint=models.UniqueConstraint(
                fields=("client", "test_mode", "key"), name="idempotency_unique_mode_key"
            ),
        ),
        migrations.RemoveConstraint(
            model_name="idempotencyrecord",
            name="idempotency_unique_key",
        ),
    ]
