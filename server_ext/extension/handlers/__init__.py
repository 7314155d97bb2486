"""The REST and WebSocket handlers under ``/daas/api/``, split by area."""

from . import nxmx, session, spectra, streams

default_handlers = session.default_handlers + nxmx.default_handlers + spectra.default_handlers \
    + streams.default_handlers
