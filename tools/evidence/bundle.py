"""One evidence bundle, ``<bundle_root>/<STAMP>/``, and its state files.

``run.json`` (written once when the bundle is created: case file, C binary, input checks), ``status.json``
(one entry per step: ok, blocked, missing_c or skipped, with the command, exit code and output tail) and
``commands.txt`` (tools.cmdlog). The verdict is derived from the step entries: PASS only when every step
before ``report`` is ok. A block whose only cause is a missing C binary (``missing_c``) is a block by the
environment, not a failed parity attempt: the ledger records it without touching the item's status.
"""
from __future__ import annotations

from pathlib import Path

from tools import REPO, cmdlog
from tools.cbin import CBinary
from tools.evidence.case import CaseConfig, load_case
from tools.files import locked, read_json, write_json

STEPS = ("collect", "parity", "cli_c", "cli_py", "env", "metrics", "report")
PASS, BLOCKED = "PASS", "BLOCKED"
HARD, ENVIRONMENT, SKIPPED, OK = "blocked", "missing_c", "skipped", "ok"


class BundleError(RuntimeError):
    """The bundle cannot be created or used (existing directory, bad config, unknown ledger item...)."""


class Bundle:
    """One evidence directory: its case, its C binary and the state of its steps."""

    def __init__(self, outdir, root=REPO):
        self.outdir = Path(outdir)
        self.root = Path(root)
        self.run = read_json(self.outdir / "run.json")
        if self.run is None:
            raise BundleError(f"{self.outdir} is not a bundle (no run.json); start one with `invoke phase-d`")
        self.cfg: CaseConfig = load_case(self.root / self.run["config"])
        cb = self.run["c_binary"]
        self.c = CBinary(Path(cb["path"]) if cb["path"] else None, cb["source"], cb["problem"])

    @property
    def commands(self) -> Path:
        return self.outdir / "commands.txt"

    def p(self, *parts) -> Path:
        return self.outdir.joinpath(*parts)

    # --- step entries --------------------------------------------------------------------------------------
    def steps(self) -> list[dict]:
        return read_json(self.p("status.json"), {"steps": []})["steps"]

    def step(self, name) -> dict | None:
        found = [s for s in self.steps() if s["step"] == name]
        return found[-1] if found else None

    def record(self, name, status, reason="", result: cmdlog.RunResult | None = None, **extra) -> dict:
        """Record (or replace) the entry of step ``name``; status.json is rewritten under the bundle's lock."""
        entry = {"step": name, "status": status, "reason": reason, "at": cmdlog.utc_now(), **extra}
        if result is not None:
            entry.update(command=result.command, exit_code=result.exit_code, tail=result.tail)
        with locked(self.p("status.json")):
            steps = [s for s in self.steps() if s["step"] != name] + [entry]
            write_json(self.p("status.json"), {"steps": steps})
        return entry

    def hard_blocked(self) -> dict | None:
        """The first step that stopped the run (the remaining steps are skipped), if any."""
        return next((s for s in self.steps() if s["status"] == HARD), None)

    def blocks(self) -> list[dict]:
        return [s for s in self.steps() if s["status"] in (HARD, ENVIRONMENT)]

    # --- verdict ---------------------------------------------------------------------------------------------
    def verdict(self) -> str:
        steps = {s["step"]: s for s in self.steps()}
        ok = all(steps.get(name, {}).get("status") == OK for name in STEPS if name != "report")
        return PASS if ok else BLOCKED

    def blocked_by_environment(self) -> bool:
        """BLOCKED only because the C binary is missing: every PyTorch step ran and passed."""
        blocks = self.blocks()
        return self.verdict() == BLOCKED and bool(blocks) and all(s["status"] == ENVIRONMENT for s in blocks)

    def hazards(self) -> list[str]:
        """Input flags of the case (checked before the run) and of the CLI runs that happened, each once."""
        found = list((self.run.get("preflight") or {}).get("hazards", []))
        for w in ("c", "py"):
            found += read_json(self.p("cli", f"{w}_run.json"), {}).get("hazards", [])
        return list(dict.fromkeys(h["message"] for h in found))
