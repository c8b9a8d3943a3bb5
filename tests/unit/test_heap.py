"""heap.steady_heap: glibc's malloc thresholds fixed for the eager kernel, and called by every program."""
import platform
import sys

import pytest

import nanobrag_torch as nb
from nanobrag_torch import heap
from nanobrag_torch.programs import entry


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="mallopt is glibc's")
def test_steady_heap_sets_glibc_thresholds():
    assert nb.steady_heap() is True
    assert nb.steady_heap() is True  # idempotent


def test_steady_heap_without_mallopt_changes_nothing(monkeypatch):
    class NoMallopt:  # a C library without mallopt (macOS, musl builds without it)
        def __init__(self, name):
            pass

    monkeypatch.setattr(heap.ctypes, "CDLL", NoMallopt)
    assert heap.steady_heap() is False


def test_programs_hold_the_heap_steady(monkeypatch):
    calls = []
    monkeypatch.setattr(entry, "steady_heap", lambda: calls.append(1) or True)
    assert entry.run_program(lambda argv: 0, [], "prog") == 0
    assert calls == [1]
