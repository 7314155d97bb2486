"""The extension's one error family: a request that cannot be served as asked."""

from tornado import web


class DaasRequestError(web.HTTPError):
    """A user-caused error: the HTTP status to answer and a message that says what to do.

    Jupyter's API handlers answer it as ``{"message": ..., "reason": ...}``.
    """

    user_error = True

    def __init__(self, status: int, message: str):
        super().__init__(status)
        self.message = message

    @property
    def log_message(self) -> str:
        """What Jupyter's API handlers answer as ``message`` (tornado's own would escape ``%``)."""
        return self.message

    def __str__(self):
        return self.message


class ServerStopping(DaasRequestError):
    """A cluster call that arrived, or was still waiting, while the server stops: not a fault."""

    def __init__(self):
        super().__init__(503, "the Jupyter server is stopping; start it again and repeat the request")
