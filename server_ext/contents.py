"""Moved to :mod:`server_ext.extension.contents`; this name keeps older configurations working
(``--ServerApp.contents_manager_class=server_ext.contents.ReadOnlyDataContentsManager``)."""

from .extension.contents import ReadOnlyDataContentsManager

__all__ = ["ReadOnlyDataContentsManager"]
