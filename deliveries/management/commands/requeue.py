from deliveries import operations
from deliveries.management.commands._common import DeliveryOperationCommand


class Command(DeliveryOperationCommand):
    help = (
        "Publish the delivery tasks of queued deliveries again now, e.g. after RabbitMQ lost or "
        "purged its queues (the dispatcher would do it after MAILHUB_REPUBLISH_AFTER_SECONDS). "
        "Statuses do not change; duplicate tasks are harmless. "
        "Exit codes: 0 done, 1 error, 2 usage."
    )
    statuses = list(operations.REQUEUEABLE)
    verb = "requeued"
    operation = staticmethod(operations.deliveries_requeue)
