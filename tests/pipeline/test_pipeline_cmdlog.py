"""The one runner and the bundle command log (tools.cmdlog): one line per command,
`UTC time<TAB>exit code<TAB>command`, written so that it replays from the repository root."""
from __future__ import annotations

import re
import sys

import pytest

from tools import cmdlog

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ISO_STAMP = re.compile(r"^\d{8}T\d{6}Z$")


def test_line_format_and_round_trip(tmp_path):
    # Two commands give two lines of exactly three tab-separated fields, read back unchanged.
    log = tmp_path / "commands.txt"
    first = cmdlog.log_command(log, 0, "pytest --collect-only -q", "2025-11-26T10:00:00Z")
    cmdlog.log_command(log, 9, "nanoBragg -mat A.mat")
    assert first == "2025-11-26T10:00:00Z\t0\tpytest --collect-only -q"
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(line.count("\t") == 2 for line in lines)
    back = cmdlog.read_commands(log)
    assert [(c.exit_code, c.command) for c in back] == [(0, "pytest --collect-only -q"), (9, "nanoBragg -mat A.mat")]
    assert ISO_UTC.match(back[1].started)


def test_format_command_is_a_reproducible_shell_line(tmp_path):
    # Working directory relative to the root as `cd DIR &&`, env overrides as VAR=value, arguments quoted.
    line = cmdlog.format_command(["prog", "a b", "-x"], cwd=tmp_path / "run", env={"NB_C_BIN": "/opt/nb"},
                                 root=tmp_path)
    assert line == "cd run && NB_C_BIN=/opt/nb prog 'a b' -x"
    assert cmdlog.format_command(["prog"], cwd=tmp_path, root=tmp_path) == "prog"  # the root itself: no cd


def test_a_logged_command_is_always_one_line(tmp_path):
    # Newlines/tabs inside arguments are escaped by format_command; log_command refuses raw ones.
    line = cmdlog.format_command(["echo", "two\nlines\tand tab"])
    assert "\n" not in line and "\t" not in line
    with pytest.raises(ValueError):
        cmdlog.log_command(tmp_path / "c.txt", 0, "two\nlines")


def test_malformed_log_line_names_its_number(tmp_path):
    log = tmp_path / "commands.txt"
    log.write_text("2025-11-26T10:00:00Z\t0\tok\nbroken line\n")
    with pytest.raises(ValueError, match=":2:"):
        cmdlog.read_commands(log)


def test_run_records_exit_code_output_and_new_files(tmp_path):
    # The child prints, writes a file and exits 3: the log has 3, the output file has the text, the tail
    # too, and the new file is listed; the env override is part of the logged command.
    log, out = tmp_path / "commands.txt", tmp_path / "out.log"
    work = tmp_path / "work"
    work.mkdir()
    (work / "old.txt").write_text("x")
    res = cmdlog.run([sys.executable, "-c", "import sys; open('new.bin', 'w'); print('hello'); sys.exit(3)"],
                     cwd=work, log_path=log, output_path=out, env={"EXTRA": "1"})
    assert res.exit_code == 3 and "hello" in out.read_text() and res.tail == "hello"
    assert res.new_files == ["new.bin"]
    (entry,) = cmdlog.read_commands(log)
    assert entry.exit_code == 3 and entry.command.startswith(f"cd {work} && EXTRA=1 ")


def test_run_keeps_stderr_apart_when_asked(tmp_path):
    res = cmdlog.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
                     merge_stderr=False)
    assert (res.stdout, res.stderr) == ("out\n", "err\n")


def test_missing_program_is_127_and_timeout_is_124_like_the_shell(tmp_path):
    log = tmp_path / "commands.txt"
    assert cmdlog.run([str(tmp_path / "no-such-program")], log_path=log).exit_code == 127
    slow = cmdlog.run([sys.executable, "-c", "import time; time.sleep(10)"], log_path=log, timeout_s=0.5)
    assert slow.exit_code == 124 and slow.timed_out and "timeout" in slow.tail
    assert [c.exit_code for c in cmdlog.read_commands(log)] == [127, 124]


def test_paths_inside_the_repository_are_logged_relative_to_where_the_command_runs(tmp_path):
    # A venv's python at <root>/.nox/project/bin/python, run from <root>/reports/b/run, is written as
    # ../../../.nox/project/bin/python: no machine-specific checkout path, and it replays from the root.
    root = tmp_path / "repo"
    run_dir = root / "reports" / "b" / "run"
    line = cmdlog.format_command([str(root / ".nox/project/bin/python"), "-m", "x", "/opt/nanoBragg"],
                                 cwd=run_dir, root=root)
    assert line == "cd reports/b/run && ../../../.nox/project/bin/python -m x /opt/nanoBragg"
    assert cmdlog.format_command([str(root / "tools" / "a.py")], root=root) == "tools/a.py"


def test_tail_drops_c_progress_lines():
    # C prints "NN% done" progress lines; they carry no information for a blocking report.
    assert cmdlog.tail_text("start\n 10% done\n 20% done\nERROR: x\n") == "start\nERROR: x"


def test_fresh_dirs_are_never_shared(tmp_path):
    # Two directories asked for in the same second get two stamps (the second waits for the next second);
    # an explicit stamp that exists is refused.
    from tools.files import fresh_dir

    a, b = fresh_dir(tmp_path), fresh_dir(tmp_path)
    assert a != b and a.is_dir() and b.is_dir() and ISO_STAMP.match(a.name) and ISO_STAMP.match(b.name)
    with pytest.raises(FileExistsError):
        fresh_dir(tmp_path, a.name)


def test_git_state_ignores_files_the_pipeline_writes(tmp_path):
    # A modified ledger (written by the pipeline) does not make the code "dirty"; a modified source does.
    import subprocess

    from tools.evidence.envcapture import git_state

    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "fix_plan.md").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "c")
    (tmp_path / "docs" / "fix_plan.md").write_text("b\n")
    state = git_state(tmp_path, ignore_prefix=("docs/fix_plan.md",))
    assert state["dirty"] is False and len(state["sha"]) == 40
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path, ignore_prefix=("docs/fix_plan.md",)) == {**state, "dirty": True, "changed": ["code.py"]}
