from deliveries.management.commands._common import DeliveryOperationCommand
from deliveries.services import CANCELLABLE, deliveries_cancel


class Command(DeliveryOperationCommand):
    help = (
        "Cancel deliveries not yet sent (scheduled, queued, deferred). A delivery being sent "
        "right now is left alone: its SMTP transaction may already be done. "
        "Exit codes: 0 done, 1 error, 2 usage."
    )
    statuses = list(CANCELLABLE)
    verb = "cancelled"
    operation = staticmethod(deliveries_cancel)
