"""The work-item ledger (``docs/fix_plan.md``) and the phase checklists (``plans/active/*.md``).

Ledger layout (one section per item)::

    ## [SOURCE-WEIGHT-001] Weighted source normalization
    - Status: <one line, rewritten by this tool>
    ...free text...
    ### Attempts
    #### Attempt #1 — 2025-11-26T10:00:00Z — PASS
    - Bundle: `reports/.../phase_d/<STAMP>/`
    - ...

``append_attempt`` adds the next ``#### Attempt #N`` at the end of the item's section and rewrites its
status line; an unknown item id, or a bundle that already has an Attempt, is refused. Plan checklists
hold lines ``- [ ] D1 — text``; ``tick_plan`` turns them into ``- [x] D1 — text — evidence: `<bundle>```.
Every write goes to a temporary file in the same directory that then replaces the original (``os.replace``
is atomic on POSIX), under an exclusive lock, so a crash or a concurrent run never leaves a torn file.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

ITEM_RE = re.compile(r"^## \[(?P<id>[^\]]+)\]")
ATTEMPT_RE = re.compile(r"^#### Attempt #(?P<n>\d+)\b")
STATUS_RE = re.compile(r"^- Status:")
ATTEMPTS_HEADER = "### Attempts"
NO_ATTEMPTS = "(no attempts yet)"


class LedgerError(ValueError):
    """The ledger or plan cannot be updated as asked; nothing was written."""


def atomic_write(path, text: str) -> None:
    """Replace ``path`` with ``text`` via a temporary file in the same directory (never a torn file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path):
    """Exclusive advisory lock for a read-modify-write of ``path``.

    The lock is taken on the parent directory: its inode survives ``os.replace`` of the file (a lock on the
    file itself would be on the old inode after the first replace), and no lock file is left behind.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(Path(path).resolve().parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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


def add_attempt(text: str, item: str, when: str, result: str, body: list[str], status: str,
                bundle: str | None = None) -> tuple[str, int]:
    """Pure function behind :func:`append_attempt`: return (new text, attempt number)."""
    lines = text.splitlines()
    start, end = _section(lines, item)
    section = lines[start:end]
    if bundle is not None and any(f"`{bundle}`" in ln for ln in section):
        raise LedgerError(f"[{item}] already has an Attempt for bundle {bundle}")
    n = max((int(m.group("n")) for ln in section if (m := ATTEMPT_RE.match(ln))), default=0) + 1
    # Status line: rewrite, or add right under the header.
    status_line = f"- Status: {status}"
    idx = next((i for i, ln in enumerate(section) if STATUS_RE.match(ln)), None)
    if idx is None:
        section.insert(1, status_line)
    else:
        section[idx] = status_line
    section = [ln for ln in section if ln.strip() != NO_ATTEMPTS]
    while section and not section[-1].strip():
        section.pop()
    if not any(ln.strip() == ATTEMPTS_HEADER for ln in section):
        section += ["", ATTEMPTS_HEADER]
    section += ["", *render_attempt(n, when, result, body), ""]
    new = lines[:start] + section + lines[end:]
    return "\n".join(new).rstrip("\n") + "\n", n


def append_attempt(path, item: str, when: str, result: str, body: list[str], status: str,
                   bundle: str | None = None) -> int:
    """Append the next Attempt under ``[item]`` in the ledger at ``path``; return its number."""
    path = Path(path)
    with locked(path):
        new, n = add_attempt(path.read_text(encoding="utf-8"), item, when, result, body, status, bundle)
        atomic_write(path, new)
    return n


_TICK_RE = r"^(?P<lead>\s*- \[)[ xX](?P<mid>\] {id}\b)(?P<text>.*?)(?: — evidence: `[^`]*`)?\s*$"


def tick_items(text: str, ids, evidence: str) -> str:
    """Pure function behind :func:`tick_plan`."""
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


def tick_plan(path, ids, evidence: str) -> None:
    """Tick checklist items ``ids`` in the plan at ``path`` with the evidence path (atomic)."""
    path = Path(path)
    with locked(path):
        atomic_write(path, tick_items(path.read_text(encoding="utf-8"), ids, evidence))


def main(argv=None) -> int:
    """``python -m tools.ledger show|next ITEM [--ledger PATH]`` (appending is done by tools.phase_d)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tools.ledger", description=main.__doc__)
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
        print(f"error: {exc}", file=__import__("sys").stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
