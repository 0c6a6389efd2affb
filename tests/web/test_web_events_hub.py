"""The in-process "stored" notification hub and its ingest listener."""

from __future__ import annotations

from types import SimpleNamespace

from dicom_ecg_node.services.events import EventHub, StoredEvent


def _outcome(status: str) -> SimpleNamespace:
    return SimpleNamespace(status=status, sop_instance_uid="1.2.3", sop_class_uid="1.2.840.10008.5.1.4.1.1.9.1.1",
                           study_instance_uid="1.2")


def test_hub_fans_out_and_unsubscribes():
    hub = EventHub()
    a: list[StoredEvent] = []
    b: list[StoredEvent] = []
    stop_a = hub.subscribe(a.append)
    hub.subscribe(b.append)
    hub.store_listener(_outcome("stored"))
    stop_a()
    stop_a()  # idempotent
    hub.store_listener(_outcome("replaced"))
    assert [e.status for e in a] == ["stored"]
    assert [e.status for e in b] == ["stored", "replaced"]
    assert hub.subscriber_count == 1


def test_duplicates_are_not_announced_and_a_failing_subscriber_is_skipped():
    hub = EventHub()
    got: list[StoredEvent] = []

    def broken(event: StoredEvent) -> None:
        raise RuntimeError("subscriber bug")

    hub.subscribe(broken)
    hub.subscribe(got.append)
    hub.store_listener(_outcome("duplicate"))
    hub.store_listener(_outcome("stored"))
    assert [e.sop_instance_uid for e in got] == ["1.2.3"]
