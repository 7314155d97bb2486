"""An authorizer for the authorization test: every user may do everything except use the daas API."""

from jupyter_server.auth import Authorizer


class DenyDaas(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        return resource != "daas"
