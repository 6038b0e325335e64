from deliveries.management.commands._common import DeliveryOperationCommand
from deliveries.services import RETRYABLE, deliveries_retry_now


class Command(DeliveryOperationCommand):
    help = (
        "Send failed and deferred deliveries again now, like `postqueue -f` for the ones named. "
        "A failed delivery's message gets a fresh lifetime. Delivered, bounced, cancelled and "
        "suppressed deliveries are never touched. Exit codes: 0 done, 1 error, 2 usage."
    )
    statuses = list(RETRYABLE)
    verb = "retried"
    operation = staticmethod(deliveries_retry_now)
