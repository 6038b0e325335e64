# Client, ApiKey, RateCounter and IdempotencyRecord belong to `accounts` now (accounts 0001), and
# every foreign key points there (deliveries 0008, webhooks 0002): `api` forgets the models. Only
# Django's state changes; the tables stay, owned by `accounts`.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0003_rate_counter"),
        ("accounts", "0001_initial"),
        ("deliveries", "0008_client_in_accounts"),
        ("webhooks", "0002_client_in_accounts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="RateCounter"),
                migrations.DeleteModel(name="IdempotencyRecord"),
                migrations.DeleteModel(name="ApiKey"),
                migrations.DeleteModel(name="Client"),
            ],
            database_operations=[],
        )
    ]
