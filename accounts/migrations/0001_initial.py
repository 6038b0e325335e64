# Client, ApiKey, RateCounter and IdempotencyRecord move here from the `api` app, keeping their
# tables: these operations change only Django's picture of the models (the state). On a database
# migrated before the move, `api` 0001-0003 made the tables; on a new one they still do, before
# this migration. Nothing is rebuilt, copied or renamed. The foreign keys of `deliveries` and
# `webhooks` follow in state-only migrations of their own, then `api` 0004 forgets the models.

import django.db.models.deletion
from django.db import migrations, models

MOVED = ("client", "apikey", "ratecounter", "idempotencyrecord")


def move_content_types(apps, schema_editor, *, source="api", target="accounts"):
    # Permissions and admin log entries point at content types: renaming the rows keeps both
    # (left alone, the next migrate would add new rows and strand the old permissions). On a
    # new database there are no rows yet; post_migrate creates them under `accounts`.
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MOVED:
        if not ContentType.objects.using(db).filter(app_label=target, model=model).exists():
            ContentType.objects.using(db).filter(app_label=source, model=model).update(
                app_label=target
            )


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, source="accounts", target="api")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("api", "0003_rate_counter"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Client",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("name", models.CharField(max_length=100, unique=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={"db_table": "api_client"},
                ),
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("name", models.CharField(blank=True, max_length=100)),
                        (
                            "prefix",
                            models.CharField(
                                help_text="The visible start of the key.", max_length=16
                            ),
                        ),
                        (
                            "key_hash",
                            models.CharField(editable=False, max_length=64, unique=True),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("last_used_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "rate_limit_per_minute",
                            models.PositiveIntegerField(
                                blank=True,
                                help_text=(
                                    "Requests per minute; empty: MAILHUB_API_RATE_LIMIT_PER_MINUTE."
                                ),
                                null=True,
                            ),
                        ),
                        (
                            "client",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="api_keys",
                                to="accounts.client",
                            ),
                        ),
                    ],
                    options={"verbose_name": "API key", "db_table": "api_apikey"},
                ),
                migrations.CreateModel(
                    name="RateCounter",
                    fields=[
                        (
                            "api_key",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                primary_key=True,
                                serialize=False,
                                to="accounts.apikey",
                            ),
                        ),
                        (
                            "window_index",
                            models.BigIntegerField(
                                help_text="Which one-minute window `count` is of."
                            ),
                        ),
                        (
                            "count",
                            models.PositiveIntegerField(
                                help_text="Requests allowed in that window."
                            ),
                        ),
                        (
                            "previous",
                            models.PositiveIntegerField(
                                help_text="Requests allowed in the window before."
                            ),
                        ),
                    ],
                    options={"db_table": "api_ratecounter"},
                ),
                migrations.CreateModel(
                    name="IdempotencyRecord",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("key", models.CharField(max_length=255)),
                        ("request_hash", models.CharField(max_length=64)),
                        ("response_status", models.PositiveSmallIntegerField()),
                        ("response_body", models.JSONField()),
                        ("response_headers", models.JSONField(default=dict)),
                        ("created_at", models.DateTimeField()),
                        (
                            "expires_at",
                            models.DateTimeField(
                                db_index=True, help_text="May be purged after this."
                            ),
                        ),
                        (
                            "client",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="accounts.client",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "api_idempotencyrecord",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("client", "key"), name="idempotency_unique_key"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
