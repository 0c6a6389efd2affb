"""A small thread-safe publish/subscribe hub for "new ECG stored" notifications inside one process.

The hub is a wake-up call, not a record: the catalog is the source of truth. A subscriber (the web viewer's
Server-Sent Events stream) reads new rows from the catalog by their row id and uses a notification only to look
earlier than its next poll. Notifications are therefore best effort: a slow or failing subscriber never delays
or fails a C-STORE, and stores made by other worker processes, which this hub never hears of, are still found
by the poll.

Typical wiring (see :mod:`dicom_ecg_node.net.workers`)::

    hub = EventHub()
    ingest.listeners.append(hub.store_listener)
    unsubscribe = hub.subscribe(lambda event: wake_up())
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("dicom_ecg_node.events")

#: Store outcomes worth announcing: a duplicate changes nothing a viewer shows.
ANNOUNCED_STATUSES = frozenset({"stored", "replaced"})


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One object the node has just stored (durable and catalogued).

    Attributes
    ----------
    sop_instance_uid, sop_class_uid, study_instance_uid : str
    status : {"stored", "replaced"}
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    status: str


Subscriber = Callable[[StoredEvent], None]


class EventHub:
    """Fan out :class:`StoredEvent` notifications to in-process subscribers.

    Subscribers are called in the publishing thread (a C-STORE handler thread), so they must return at once:
    typically they set an event or schedule a callback on an asyncio loop with ``call_soon_threadsafe``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, Subscriber] = {}
        self._next_key = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Register ``callback``; returns a function that unregisters it (idempotent).

        Parameters
        ----------
        callback : callable
            Called with each :class:`StoredEvent`; must be quick and should not raise (exceptions are logged).
        """
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._subscribers[key] = callback

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are registered now."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: StoredEvent) -> None:
        """Call every subscriber with ``event``; a failing subscriber is logged and skipped."""
        with self._lock:
            targets = list(self._subscribers.values())  # call outside the lock: a callback may unsubscribe
        for callback in targets:
            try:
                callback(event)
            except Exception:
                logger.exception("event subscriber failed")

    def store_listener(self, outcome: Any) -> None:
        """Ingest listener: publish a :class:`StoredEvent` for a store outcome that added or replaced an object.

        Parameters
        ----------
        outcome : StoreOutcome
            What :meth:`~dicom_ecg_node.services.ingest.IngestService.store` returned.
        """
        if outcome.status in ANNOUNCED_STATUSES:
            self.publish(StoredEvent(outcome.sop_instance_uid, outcome.sop_class_uid, outcome.study_instance_uid,
                                     outcome.status))


__all__ = ["ANNOUNCED_STATUSES", "EventHub", "StoredEvent", "Subscriber"]
