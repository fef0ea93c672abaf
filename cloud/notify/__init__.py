"""Sending notifications: e-mail over SMTP, SMS through a provider, and the dispatcher that
takes due deliveries from the database, sends them once and retries the ones that failed."""


class SendError(Exception):
    """A message could not be sent.

    `permanent` says that trying again cannot help (the server refused the address, no address
    on file): the dispatcher then gives up at once instead of retrying with backoff.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
