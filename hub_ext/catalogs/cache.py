"""A small time-limited cache for catalogue answers."""

import time
from collections import OrderedDict


class TTLCache:
    """A small LRU cache whose entries expire ``ttl`` seconds after insertion."""

    def __init__(self, ttl, size):
        self.ttl = ttl
        self.size = size
        self._data = OrderedDict()

    def get(self, key):
        """``(True, value)`` for a fresh entry, ``(False, None)`` otherwise."""
        entry = self._data.get(key)
        if entry is None:
            return False, None
        stamp, value = entry
        if time.monotonic() - stamp >= self.ttl:
            del self._data[key]
            return False, None
        self._data.move_to_end(key)
        return True, value

    def put(self, key, value):
        if self.ttl <= 0 or self.size <= 0:
            return
        self._data[key] = (time.monotonic(), value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self):
        self._data.clear()
