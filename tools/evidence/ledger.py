"""The work-item ledger (``docs/fix_plan.md``) and the phase checklists (``plans/active/*.md``).

Ledger layout (one section per item)::

    ## [SOURCE-WEIGHT-001] Weighted source normalization
    - Status: <one line, rewritten by this tool>
    ...free text...
    ### Attempts
    #### Attempt #1 — 2025-11-26T10:00:00Z — PASS
    - Bundle: `reports/.../phase_d/<STAMP>/`
    - ...

:func:`record_attempt` adds the next ``#### Attempt #N`` at the end of the item's section, rewrites its
status line (or keeps it, for a run blocked by its environment) and ticks plan items, all under one lock
on the ledger's directory, so concurrent runs get distinct, consecutive numbers in file order; an unknown
item id, or a bundle that already has an Attempt, is refused. Plan checklists hold lines
``- [ ] D1 — text``; a tick turns them into ``- [x] D1 — text — evidence: `<bundle>```. Every write is
atomic (``tools.files``).
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from tools.files import atomic_write, locked

ITEM_RE = re.compile(r"^## \[(?P<id>[^\]]+)\]")
ATTEMPT_RE = re.compile(r"^#### Attempt #(?P<n>\d+)\b")
STATUS_RE = re.compile(r"^- Status:")
ATTEMPTS_HEADER = "### Attempts"
NO_ATTEMPTS = "(no attempts yet)"


class LedgerError(ValueError):
    """The ledger or plan cannot be updated as asked; nothing was written."""


def item_ids(text: str) -> list[str]:
    return [m.group("id") for line in text.splitlines() if (m := ITEM_RE.match(line))]


def _section(lines: list[str], item: str) -> tuple[int, int]:
    """(header index, end index) of the item's section; end is the next '## ' header or EOF."""
    start = next((i for i, ln in enumerate(lines) if (m := ITEM_RE.match(ln)) and m.group("id") == item), None)
    if start is None:
        raise LedgerError(f"unknown ledger item [{item}] (known: {', '.join(item_ids(chr(10).join(lines))) or 'none'})")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start, end


def attempt_numbers(text: str, item: str) -> list[int]:
    lines = text.splitlines()
    start, end = _section(lines, item)
    return [int(m.group("n")) for ln in lines[start:end] if (m := ATTEMPT_RE.match(ln))]


def next_attempt_number(text: str, item: str) -> int:
    return max(attempt_numbers(text, item), default=0) + 1


def item_status(text: str, item: str) -> str | None:
    lines = text.splitlines()
    start, end = _section(lines, item)
    for ln in lines[start:end]:
        if STATUS_RE.match(ln):
            return ln.split(":", 1)[1].strip()
    return None


def render_attempt(n: int, when: str, result: str, body: list[str]) -> list[str]:
    """Heading plus one bullet per body line; a line starting with two spaces is a sub-bullet as given."""
    return [f"#### Attempt #{n} — {when} — {result}", *[b if b.startswith("  ") else f"- {b}" for b in body]]


StatusFor = Callable[[int], str] | None  # the new status line for Attempt #n, or None: keep the status


def add_attempt(text: str, item: str, when: str, result: str, body: list[str], status: StatusFor | str,
                bundle: str | None = None) -> tuple[str, int]:
    """Pure function behind :func:`record_attempt`: return (new text, attempt number)."""
    lines = text.splitlines()
    start, end = _section(lines, item)
    section = lines[start:end]
    if bundle is not None and any(f"`{bundle}`" in ln for ln in section):
        raise LedgerError(f"[{item}] already has an Attempt for bundle {bundle}")
    n = max((int(m.group("n")) for ln in section if (m := ATTEMPT_RE.match(ln))), default=0) + 1
    new_status = status(n) if callable(status) else status
    if new_status is not None:  # rewrite, or add right under the header
        idx = next((i for i, ln in enumerate(section) if STATUS_RE.match(ln)), None)
        if idx is None:
            section.insert(1, f"- Status: {new_status}")
        else:
            section[idx] = f"- Status: {new_status}"
    section = [ln for ln in section if ln.strip() != NO_ATTEMPTS]
    while section and not section[-1].strip():
        section.pop()
    if not any(ln.strip() == ATTEMPTS_HEADER for ln in section):
        section += ["", ATTEMPTS_HEADER]
    section += ["", *render_attempt(n, when, result, body), ""]
    new = lines[:start] + section + lines[end:]
    return "\n".join(new).rstrip("\n") + "\n", n


_TICK_RE = r"^(?P<lead>\s*- \[)[ xX](?P<mid>\] {id}\b)(?P<text>.*?)(?: — evidence: `[^`]*`)?\s*$"


def tick_items(text: str, ids, evidence: str) -> str:
    """Tick checklist items ``ids`` with the evidence path; each must occur exactly once."""
    lines = text.splitlines()
    for item in ids:
        rx = re.compile(_TICK_RE.format(id=re.escape(item)))
        hits = [i for i, ln in enumerate(lines) if rx.match(ln)]
        if len(hits) != 1:
            raise LedgerError(f"plan checklist item {item!r} found {len(hits)} times (expected once)")
        m = rx.match(lines[hits[0]])
        lines[hits[0]] = f"{m.group('lead')}x{m.group('mid')}{m.group('text')} — evidence: `{evidence}`"
    return "\n".join(lines) + "\n"


def check_plan_items(text: str, ids) -> None:
    tick_items(text, ids, "check")  # raises LedgerError when an item is missing or duplicated


def record_attempt(ledger_path, item: str, when: str, result: str, body: list[str], status: StatusFor | str,
                   bundle: str | None = None, plan_path=None, plan_items=()) -> int:
    """Append the next Attempt under ``[item]`` (and tick ``plan_items`` in ``plan_path`` with ``bundle``) in one
    transaction under the ledger's lock; return the Attempt's number. Nothing is written when it fails."""
    ledger_path = Path(ledger_path)
    with locked(ledger_path):
        new, n = add_attempt(ledger_path.read_text(encoding="utf-8"), item, when, result, body, status, bundle)
        plan_text = None
        if plan_items:
            plan_text = tick_items(Path(plan_path).read_text(encoding="utf-8"), plan_items, bundle)
        atomic_write(ledger_path, new)
        if plan_text is not None:
            atomic_write(plan_path, plan_text)
    return n


def main(argv=None) -> int:
    """``python -m tools.evidence.ledger show|next ITEM [--ledger PATH]`` (appending is done by phase_d)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tools.evidence.ledger", description=main.__doc__)
    ap.add_argument("action", choices=["show", "next"])
    ap.add_argument("item")
    ap.add_argument("--ledger", default="docs/fix_plan.md")
    args = ap.parse_args(argv)
    text = Path(args.ledger).read_text(encoding="utf-8")
    try:
        if args.action == "next":
            print(next_attempt_number(text, args.item))
        else:
            print(f"[{args.item}] status: {item_status(text, args.item)}; attempts: "
                  f"{attempt_numbers(text, args.item) or 'none'}")
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
