"""Ledger (docs/fix_plan.md) Attempts and plan checklist ticks (tools.ledger)."""
from __future__ import annotations

import multiprocessing
import os

import pytest

from tools import files
from tools.evidence import ledger

LEDGER = """# Fix plan

## [ITEM-A] First item
- Status: open
- Notes: something

### Attempts

#### Attempt #1 — 2025-01-01T00:00:00Z — BLOCKED
- Bundle: `reports/x/1/`

#### Attempt #2 — 2025-01-02T00:00:00Z — PASS
- Bundle: `reports/x/2/`

## [ITEM-B] Second item
- Status: open

### Attempts
(no attempts yet)
"""

PLAN = """# Plan
- [x] A1 — done before
- [ ] D1 — collect
- [ ] D2 — parity
- [ ] D10 — not D1
"""


@pytest.fixture
def led(tmp_path):
    p = tmp_path / "fix_plan.md"
    p.write_text(LEDGER)
    return p


def _section(text, item):
    start = text.index(f"## [{item}]")
    nxt = text.find("\n## [", start + 1)
    return text[start: nxt if nxt > 0 else None]


def test_next_attempt_is_numbered_after_the_highest(led):
    # ITEM-A has Attempts #1 and #2, so the next is #3; it lands in ITEM-A's section, ITEM-B is untouched.
    n = ledger.record_attempt(led, "ITEM-A", "2025-01-03T00:00:00Z", "PASS", ["Bundle: `reports/x/3/`"],
                              "done — evidence PASS", bundle="reports/x/3/")
    text = led.read_text()
    assert n == 3
    sec = _section(text, "ITEM-A")
    assert "#### Attempt #3 — 2025-01-03T00:00:00Z — PASS\n- Bundle: `reports/x/3/`" in sec
    assert "- Status: done — evidence PASS" in sec and "- Status: open" not in sec
    assert _section(text, "ITEM-B") == _section(LEDGER, "ITEM-B")
    assert ledger.attempt_numbers(text, "ITEM-A") == [1, 2, 3]


def test_first_attempt_replaces_the_placeholder(led):
    n = ledger.record_attempt(led, "ITEM-B", "t", "BLOCKED", ["Bundle: `b/`", "  - sub-bullet"], "blocked — x")
    sec = _section(led.read_text(), "ITEM-B")
    assert n == 1 and ledger.NO_ATTEMPTS not in sec and sec.count("### Attempts") == 1
    assert "#### Attempt #1 — t — BLOCKED\n- Bundle: `b/`\n  - sub-bullet" in sec


def test_unknown_item_and_duplicate_bundle_are_refused_without_writing(led):
    before = led.read_bytes()
    with pytest.raises(ledger.LedgerError, match=r"unknown ledger item \[ITEM-Z\]"):
        ledger.record_attempt(led, "ITEM-Z", "t", "PASS", ["x"], "s")
    with pytest.raises(ledger.LedgerError, match="already has an Attempt"):
        ledger.record_attempt(led, "ITEM-A", "t", "PASS", ["x"], "s", bundle="reports/x/2/")
    assert led.read_bytes() == before


def test_a_failed_write_leaves_the_ledger_intact(led, monkeypatch):
    # The new text goes to a temp file that replaces the ledger; if the replace fails, the old file stays
    # byte-identical and no temp file is left behind.
    before = led.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        ledger.record_attempt(led, "ITEM-A", "t", "PASS", ["x"], "s")
    assert led.read_bytes() == before
    assert sorted(os.listdir(led.parent)) == ["fix_plan.md"]


def test_status_line_is_added_when_missing():
    text = "## [N-1] t\nfree text\n"
    new, n = ledger.add_attempt(text, "N-1", "t", "PASS", ["b"], "done")
    assert n == 1 and new.splitlines()[1] == "- Status: done"


def test_ticks_mark_items_with_the_evidence_and_a_retick_replaces_it(led):
    plan = led.parent / "plan.md"
    plan.write_text(PLAN)
    ledger.record_attempt(led, "ITEM-B", "t", "PASS", ["b"], "done", bundle="reports/p/1/", plan_path=plan,
                          plan_items=["D1", "D2"])
    lines = plan.read_text().splitlines()
    assert lines[2] == "- [x] D1 — collect — evidence: `reports/p/1/`"
    assert lines[3] == "- [x] D2 — parity — evidence: `reports/p/1/`"
    assert lines[4] == "- [ ] D10 — not D1"  # "D1" must not match "D10"
    ledger.record_attempt(led, "ITEM-B", "t", "PASS", ["b"], "done", bundle="reports/p/2/", plan_path=plan,
                          plan_items=["D1"])
    assert plan.read_text().splitlines()[2] == "- [x] D1 — collect — evidence: `reports/p/2/`"


def test_a_missing_plan_item_refuses_the_whole_transaction(led):
    # The Attempt and the ticks are one transaction: a plan item that does not exist writes neither.
    plan = led.parent / "plan.md"
    plan.write_text(PLAN)
    before = led.read_text()
    with pytest.raises(ledger.LedgerError, match="D9"):
        ledger.record_attempt(led, "ITEM-B", "t", "PASS", ["b"], "done", bundle="b/", plan_path=plan,
                              plan_items=["D1", "D9"])
    assert plan.read_text() == PLAN and led.read_text() == before


def test_keeping_the_status_leaves_the_status_line_alone(led):
    # status=None (a run blocked by its environment): the Attempt is added, the status line is untouched.
    n = ledger.record_attempt(led, "ITEM-A", "t", "BLOCKED (environment: no C binary)", ["x"], None)
    text = led.read_text()
    assert n == 3 and ledger.item_status(text, "ITEM-A") == "open"
    assert "#### Attempt #3 — t — BLOCKED (environment: no C binary)" in text


def test_the_status_can_name_its_own_attempt_number(led):
    # The number is only known inside the lock, so the status is a function of it.
    ledger.record_attempt(led, "ITEM-A", "t", "PASS", ["x"], lambda n: f"done (Attempt #{n})")
    assert ledger.item_status(led.read_text(), "ITEM-A") == "done (Attempt #3)"


def _append_many(path, worker, count):
    for i in range(count):
        ledger.record_attempt(path, "ITEM-B", f"w{worker}-{i}", "PASS", [f"Bundle: `b/{worker}/{i}/`"],
                              lambda n: f"done #{n}", bundle=f"b/{worker}/{i}/")


def test_concurrent_writers_get_distinct_consecutive_numbers(led):
    # Three processes append 15 Attempts each to one item at the same time. Under the lock every
    # read-modify-write is whole: 45 Attempts numbered 1..45 in file order, none lost or duplicated, every
    # bundle once, and the status names the last number. (Without the lock, interleaved writes lose Attempts.)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(led, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    text = led.read_text()
    assert ledger.attempt_numbers(text, "ITEM-B") == list(range(1, 46))
    assert sorted(text.count(f"`b/{w}/{i}/`") for w in range(3) for i in range(15)) == [1] * 45
    assert ledger.item_status(text, "ITEM-B") == "done #45"
    assert _section(text, "ITEM-A") == _section(LEDGER, "ITEM-A")


def test_ledger_cli_reports_next_number(led, capsys):
    assert ledger.main(["next", "ITEM-A", "--ledger", str(led)]) == 0
    assert capsys.readouterr().out.strip() == "3"
    assert ledger.main(["next", "NOPE", "--ledger", str(led)]) == 1
