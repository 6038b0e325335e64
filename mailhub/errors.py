class MailhubError(Exception):
    """A domain error with a machine-readable code; the API renders it as a problem response."""

    status = 400

    def __init__(self, message: str, *, code: str, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra or {}
