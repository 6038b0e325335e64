from deliveries import operations
from deliveries.management.commands._common import DeliveryOperationCommand


class Command(DeliveryOperationCommand):
    help = (
        "Send failed and deferred deliveries again now, like `postqueue -f` for the ones named. "
        "A failed delivery's message gets a fresh lifetime. Delivered, bounced, cancelled and "
        "suppressed deliveries are never touched. Exit codes: 0 done, 1 error, 2 usage."
    )
    statuses = list(operations.RETRYABLE)
    verb = "retried"
    operation = staticmethod(operations.deliveries_retry_now)
