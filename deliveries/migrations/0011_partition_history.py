# The history tables become partitioned by time, a partition a day: events by `created_at`,
# attempts by `started_at` (deliveries/partitions.py says why a day). Retention then drops a
# day's partition instead of deleting its rows one by one (deliveries/services/retention.py).
#
# Each table is converted in place: the old one is renamed, a partitioned one is made LIKE it
# (the same columns in the same order, defaults and checks), with partitions covering the rows
# there are (a month each for rows older than about 90 days, a day each after), the days up to a
# week ahead and a DEFAULT partition, so that no insert can fail for a missing partition; the
# rows are copied, the old table dropped, and the keys, indexes and foreign keys made again.
#
# - A partitioned table's primary key must hold the partition key: (id, created_at) and
#   (id, started_at). Django still knows `id` as the primary key (a composite one could not be
#   shown in the admin nor referenced by a foreign key in Django 5.2); ids stay unique by
#   construction (uuid4; a sequence).
# - `attempt_unique_number` cannot exist on the partitioned table for the same reason; the
#   claim numbers attempts under the delivery's row lock, so two of one number cannot be
#   written. The plain index `attempt_delivery_number` replaces it and the index on
#   `delivery_id` alone, which it starts with.
# - The attempt ids come from a sequence owned by the column (PostgreSQL 15 has no identity
#   column on a partitioned table), carried on from the identity's last value.
# - Nothing may reference the event table any more: webhooks 0004, run before this one, drops
#   the notifications' constraint.
#
# The copy holds both tables locked: writes of events and attempts (accepts, claims, settles)
# wait until the migration commits. On a big database, run `purge` first, and migrate when a
# pause of that length is acceptable. Reversible: the reverse copies the rows back into plain
# tables of the previous layout.

from django.db import migrations, models

#: The days of partitions made ahead, as MAILHUB_HISTORY_PARTITIONS_AHEAD_DAYS's default; the
#: beat keeps that many from then on.
AHEAD_DAYS = 7
#: Rows older than this many days (rounded to the month) go to partitions of a month each.
DAILY_FOR_DAYS = 90

EVENT_KEYS = """
ALTER TABLE deliveries_event ADD CONSTRAINT deliveries_event_pkey PRIMARY KEY ({key});
CREATE INDEX event_client_created ON deliveries_event (client_id, created_at);
CREATE INDEX event_client_test_created ON deliveries_event (client_id, created_at)
    WHERE test_mode;
CREATE INDEX event_created ON deliveries_event (created_at);
CREATE INDEX event_fanout_due ON deliveries_event (created_at) WHERE NOT fanned_out;
CREATE INDEX deliveries_event_delivery_id_45a7ba56 ON deliveries_event (delivery_id);
CREATE INDEX deliveries_event_message_id_3f49ae4d ON deliveries_event (message_id);
ALTER TABLE deliveries_event
    ADD CONSTRAINT deliveries_event_client_id_2b3fcd08_fk_api_client_id
        FOREIGN KEY (client_id) REFERENCES api_client (id) DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT deliveries_event_delivery_id_45a7ba56_fk_deliveries_delivery_id
        FOREIGN KEY (delivery_id) REFERENCES deliveries_delivery (id)
        DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT deliveries_event_message_id_3f49ae4d_fk_deliveries_message_id
        FOREIGN KEY (message_id) REFERENCES deliveries_message (id)
        DEFERRABLE INITIALLY DEFERRED;
"""
ATTEMPT_FOREIGN_KEY = """
ALTER TABLE deliveries_attempt
    ADD CONSTRAINT deliveries_attempt_delivery_id_0b361f59_fk_deliverie
        FOREIGN KEY (delivery_id) REFERENCES deliveries_delivery (id)
        DEFERRABLE INITIALLY DEFERRED;
"""


def partitions_sql(table: str, column: str, source: str) -> str:
    """Make the partitions of ``table`` (by ``column``) for the rows of ``source``, the days
    ahead and the DEFAULT partition. Bounds are midnights UTC; names ``<table>_p<YYYYMM[DD]>``,
    as ``deliveries.partitions`` makes them."""
    return f"""
DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    oldest date;
    newest date;
    daily_from date;
    day date;
    upto date;
BEGIN
    SELECT (min({column}) AT TIME ZONE 'UTC')::date, (max({column}) AT TIME ZONE 'UTC')::date
        INTO oldest, newest FROM {source};
    oldest := least(coalesce(oldest, today), today);
    newest := greatest(coalesce(newest, today), today + {AHEAD_DAYS});
    daily_from := greatest(oldest, date_trunc('month', today - {DAILY_FOR_DAYS})::date);
    day := CASE WHEN oldest < daily_from THEN date_trunc('month', oldest)::date
                ELSE daily_from END;
    WHILE day < daily_from LOOP
        upto := (day + interval '1 month')::date;
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF {table} FOR VALUES FROM (%L) TO (%L)',
            '{table}_p' || to_char(day, 'YYYYMM'),
            to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(upto, 'YYYY-MM-DD') || ' 00:00:00+00'
        );
        day := upto;
    END LOOP;
    WHILE day <= newest LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF {table} FOR VALUES FROM (%L) TO (%L)',
            '{table}_p' || to_char(day, 'YYYYMMDD'),
            to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00'
        );
        day := day + 1;
    END LOOP;
    CREATE TABLE {table}_default PARTITION OF {table} DEFAULT;
END
$$;
"""


FORWARD = f"""
ALTER TABLE deliveries_event RENAME TO deliveries_event_unpartitioned;
CREATE TABLE deliveries_event
    (LIKE deliveries_event_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (created_at);
{partitions_sql("deliveries_event", "created_at", "deliveries_event_unpartitioned")}
INSERT INTO deliveries_event SELECT * FROM deliveries_event_unpartitioned;
DROP TABLE deliveries_event_unpartitioned;
{EVENT_KEYS.format(key="id, created_at")}

ALTER TABLE deliveries_attempt RENAME TO deliveries_attempt_unpartitioned;
CREATE TABLE deliveries_attempt
    (LIKE deliveries_attempt_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (started_at);
CREATE SEQUENCE deliveries_attempt_id_seq_partitioned OWNED BY deliveries_attempt.id;
DO $$
DECLARE
    last bigint;
    called boolean;
BEGIN
    EXECUTE format(
        'SELECT last_value, is_called FROM %s',
        pg_get_serial_sequence('deliveries_attempt_unpartitioned', 'id')
    ) INTO last, called;
    PERFORM setval('deliveries_attempt_id_seq_partitioned', last, called);
END
$$;
ALTER TABLE deliveries_attempt
    ALTER COLUMN id SET DEFAULT nextval('deliveries_attempt_id_seq_partitioned');
{partitions_sql("deliveries_attempt", "started_at", "deliveries_attempt_unpartitioned")}
INSERT INTO deliveries_attempt SELECT * FROM deliveries_attempt_unpartitioned;
DROP TABLE deliveries_attempt_unpartitioned;
ALTER SEQUENCE deliveries_attempt_id_seq_partitioned RENAME TO deliveries_attempt_id_seq;
ALTER TABLE deliveries_attempt
    ADD CONSTRAINT deliveries_attempt_pkey PRIMARY KEY (id, started_at);
CREATE INDEX attempt_delivery_number ON deliveries_attempt (delivery_id, number);
{ATTEMPT_FOREIGN_KEY}
"""

REVERSE = f"""
ALTER TABLE deliveries_event RENAME TO deliveries_event_partitioned;
CREATE TABLE deliveries_event
    (LIKE deliveries_event_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO deliveries_event SELECT * FROM deliveries_event_partitioned;
DROP TABLE deliveries_event_partitioned;
{EVENT_KEYS.format(key="id")}

ALTER TABLE deliveries_attempt RENAME TO deliveries_attempt_partitioned;
ALTER SEQUENCE deliveries_attempt_id_seq RENAME TO deliveries_attempt_id_seq_partitioned;
CREATE TABLE deliveries_attempt
    (LIKE deliveries_attempt_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE deliveries_attempt
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY;
INSERT INTO deliveries_attempt SELECT * FROM deliveries_attempt_partitioned;
SELECT setval(pg_get_serial_sequence('deliveries_attempt', 'id'), last_value, is_called)
    FROM deliveries_attempt_id_seq_partitioned;
DROP TABLE deliveries_attempt_partitioned;
ALTER TABLE deliveries_attempt ADD CONSTRAINT deliveries_attempt_pkey PRIMARY KEY (id);
ALTER TABLE deliveries_attempt
    ADD CONSTRAINT attempt_unique_number UNIQUE (delivery_id, number);
CREATE INDEX deliveries_attempt_delivery_id_0b361f59 ON deliveries_attempt (delivery_id);
{ATTEMPT_FOREIGN_KEY}
"""


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0010_relay_message_id"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, REVERSE)],
            state_operations=[
                migrations.RemoveConstraint(model_name="attempt", name="attempt_unique_number"),
                migrations.AlterField(
                    model_name="attempt",
                    name="delivery",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.CASCADE,
                        related_name="attempt_set",
                        to="deliveries.delivery",
                    ),
                ),
                migrations.AddIndex(
                    model_name="attempt",
                    index=models.Index(
                        fields=["delivery", "number"], name="attempt_delivery_number"
                    ),
                ),
            ],
        ),
    ]
