from deliveries.management.commands._common import DeliveryOperationCommand
from deliveries.services import REQUEUEABLE, deliveries_requeue


class Command(DeliveryOperationCommand):
    help = (
        "Publish the delivery tasks of queued deliveries again now, e.g. after RabbitMQ lost or "
        "purged its queues (the dispatcher would do it after MAILHUB_REPUBLISH_AFTER_SECONDS). "
        "Statuses do not change; duplicate tasks are harmless. "
        "Exit codes: 0 done, 1 error, 2 usage."
    )
    statuses = list(REQUEUEABLE)
    verb = "requeued"
    operation = staticmethod(deliveries_requeue)
