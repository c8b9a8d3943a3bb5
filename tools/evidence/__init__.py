"""The Phase D parity-evidence bundle: one command (``invoke phase-d``), one auditable directory per run.

Modules, in the order a run uses them:

* ``case``: the case file (``configs/*.toml``): flags, inputs, gate, ledger item, plan items.
* ``phase_d``: the command line: create the bundle, run the chain of steps, ``check`` for downstream tasks.
* ``steps``: the steps themselves (collect, parity, cli_c, cli_py, env, metrics, report).
* ``bundle``: the bundle's state files (run.json, status.json, commands.txt) and its verdict.
* ``report``: the text a person reads: summary.md, blocking.md, the ledger Attempt, the one-line outcome.
* ``ledger``: the Attempts in ``docs/fix_plan.md`` and the ticks in ``plans/active/*.md``.
* ``envcapture``: env.json (interpreter, libraries, git state, C binary).
"""
