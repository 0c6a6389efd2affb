"""A small, short-lived cache of catalog look-ups made on every association (the registered AE of the caller).

Why
    The access policy looks the calling AE title up in the AE registry for every association. Through the
    connection pool that look-up took about 0.18 ms of CPU, a seventh of what a whole C-ECHO association costs the
    node, for a row that changes only when an admin edits the registry.
Staleness
    Edits made through this process's catalog (``AERegistry.add``/``update``/``remove``) clear the cache at once.
    Edits from another process (``ecg-node ae ...`` while the node runs, other worker processes, other machines on
    a shared PostgreSQL catalog) are seen once the entry is older than ``ttl_s`` (:data:`REGISTRY_CACHE_S`, one
    second). Only hits are kept: an unknown title is looked up again every time, so a newly registered device is
    admitted at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Any

#: Seconds a registry entry read by this process is trusted before it is read again.
REGISTRY_CACHE_S = 1.0
#: Entries kept at most (distinct keys looked up within ``ttl_s``).
MAX_ENTRIES = 4096


class LookupCache:
    """Thread-safe ``key -> value`` entries that expire ``ttl_s`` seconds after they were read from the catalog.

    Parameters
    ----------
    ttl_s : float
        Seconds an entry is served; 0 disables the cache.
    """

    def __init__(self, ttl_s: float = REGISTRY_CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._items: dict[Hashable, tuple[float, Any]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        """Changes on every :meth:`clear`; pass the value read before a look-up to :meth:`put`."""
        with self._lock:
            return self._generation

    def get(self, key: Hashable) -> Any | None:
        """The value cached under ``key`` if it is younger than ``ttl_s``, else ``None``."""
        with self._lock:
            item = self._items.get(key)
        if item is None or time.monotonic() - item[0] >= self.ttl_s:
            return None
        return item[1]

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        """Keep ``value``, read from the catalog after :attr:`generation` was ``generation``.

        Nothing is kept when the cache was cleared in between: the value may predate the edit that cleared it.
        """
        if self.ttl_s <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if generation != self._generation:
                return
            if len(self._items) >= MAX_ENTRIES:
                self._items = {k: v for k, v in self._items.items() if now - v[0] < self.ttl_s}
                if len(self._items) >= MAX_ENTRIES:
                    self._items.clear()
            self._items[key] = (now, value)

    def clear(self) -> None:
        """Forget every entry (after an edit of what they were read from)."""
        with self._lock:
            self._generation += 1
            self._items.clear()


__all__ = ["MAX_ENTRIES", "REGISTRY_CACHE_S", "LookupCache"]
