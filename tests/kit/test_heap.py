"""Garbage-collector pauses are exported per generation, and settling the heap after
start-up leaves what start-up built out of later collections."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry

from services.kit import heap


def test_each_collection_is_measured_by_generation() -> None:
    registry = CollectorRegistry()
    pauses = heap.GcPauses(registry)
    pauses.install()
    try:
        gc.collect(2)
    finally:
        pauses.remove()
    count = registry.get_sample_value("enlace_gc_pause_seconds_count", {"generation": "2"})
    assert count is not None
    assert count >= 1
    gc.collect(2)  # removed: no longer observed
    assert registry.get_sample_value("enlace_gc_pause_seconds_count", {"generation": "2"}) == count


def test_settling_moves_the_start_up_heap_out_of_collections() -> None:
    try:
        heap.settle()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules, classes and functions imported so far
        tracked = len(gc.get_objects(generation=2))
        assert tracked < frozen  # a full collection now walks far less than it did
    finally:
        gc.unfreeze()
