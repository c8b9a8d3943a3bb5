"""Case configuration files (tools.evidence.case) and the checked-in Phase D cases."""
from __future__ import annotations

import pytest

from tools import REPO, hermetic
from tools.evidence.case import DEFAULT_CONFIG, ConfigError, load_case
from tools.evidence.phase_d import check_case

COMMENTED = REPO / "configs" / "phase_d_source_weights_commented.toml"


def _hazard_codes(cfg, tmp_path):
    run = tmp_path / "run"
    hermetic.prepare_run_dir(run, [cfg.resolve(p) for p in cfg.inputs])
    return {h.code for h in hermetic.scan_hazards(cfg.c_argv("nanoBragg"), run)}


def test_default_case_is_runnable_and_hazard_free(tmp_path):
    # The checklist's command needs -default_F (else C prints its usage) and a comment-free source file
    # (else C reads '#' lines as sources); with both, nothing in the run directory changes C's result.
    cfg = load_case()
    assert cfg.path == DEFAULT_CONFIG.resolve()
    argv = cfg.c_argv("nanoBragg")
    assert argv[argv.index("-oversample") + 1] == "1"
    assert _hazard_codes(cfg, tmp_path) == set()


def test_commented_case_is_flagged(tmp_path):
    # Same case with the Phase A fixture as captured: the two '#' lines are flagged for both programs.
    cfg = load_case(COMMENTED)
    assert cfg.item == load_case().item and cfg.gate == load_case().gate  # inherited via `extends`
    assert _hazard_codes(cfg, tmp_path) == {"source_comments"}


def test_checked_in_cases_match_ledger_and_plan():
    # The ledger item and every plan item a PASS would tick exist (exactly once), so a run cannot start
    # and only fail at the end.
    for path in (DEFAULT_CONFIG, COMMENTED):
        check_case(load_case(path))


def test_py_argv_is_the_c_argv_plus_dtype_and_device():
    cfg = load_case()
    c, py = cfg.c_argv("C"), cfg.py_argv("PY")
    assert py[:3] == ["PY", "-m", "nanobrag_torch"]
    assert py[3:-4] == [cfg.py_floatfile if a == cfg.c_floatfile else a for a in c[1:]]
    assert py[-4:] == ["-dtype", cfg.dtype, "-device", cfg.device]


def _write(path, text):
    path.write_text(text)
    return path


BASE = """
[case]
item = "X-1"
bundle_root = "b"
ledger = "l.md"
plan = "p.md"
[tests]
parity_selector = "t.py::test"
[run]
shape = [4, 4]
inputs = ["a", "b"]
argv = ["-floatfile", "{floatfile}", "-N", "1"]
c_floatfile = "c.bin"
py_floatfile = "p.bin"
[gate]
min_correlation = 0.5
"""


def test_extends_merges_tables_and_replaces_lists(tmp_path):
    _write(tmp_path / "base.toml", BASE)
    child = _write(tmp_path / "child.toml",
                   'extends = "base.toml"\n[run]\ninputs = ["z"]\n[gate]\nmax_sum_ratio_dev = 0.1\n')
    cfg = load_case(child)
    assert cfg.inputs == ("z",)  # list replaced
    assert cfg.argv == ("-floatfile", "{floatfile}", "-N", "1")  # other keys of [run] inherited
    assert (cfg.gate.min_correlation, cfg.gate.max_sum_ratio_dev) == (0.5, 0.1)  # [gate] merged key by key


@pytest.mark.parametrize("text, message", [
    (BASE.replace('item = "X-1"', 'item = "X-1"\nitme = "typo"'), "unknown key"),
    (BASE + "\n[extra]\na = 1\n", "unknown table"),
    (BASE.replace('parity_selector = "t.py::test"', ""), "missing key"),
    (BASE.replace('"{floatfile}"', '"x.bin"'), "{floatfile}"),
    (BASE.replace("shape = [4, 4]", "shape = [4]"), "shape"),
])
def test_bad_case_files_are_refused(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_case(_write(tmp_path / "bad.toml", text))


def test_extends_loop_and_missing_file_are_refused(tmp_path):
    _write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    _write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_case(tmp_path / "a.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_case(tmp_path / "none.toml")
