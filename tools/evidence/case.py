"""Evidence-case configuration: one TOML file per case (Phase D of an item, a later phase, another item).

A case file may start with ``extends = "other.toml"`` (relative to itself): tables are merged key by key,
any other value (lists included) replaces the inherited one. Unknown keys are errors, so a typo cannot
silently fall back to a default. Paths inside the file are relative to the repository root.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from tools import REPO
from tools.thresholds import PHASE_D_GATE, Thresholds

DEFAULT_CONFIG = REPO / "configs" / "phase_d_source_weights.toml"

_SCHEMA = {
    "case": {"item", "title", "bundle_root", "ledger", "plan", "plan_items"},
    "tests": {"collect", "parity_selector"},
    "run": {"shape", "dtype", "device", "timeout_s", "inputs", "argv", "c_floatfile", "py_floatfile",
            "py_command", "env"},
    "gate": {"min_correlation", "max_sum_ratio_dev", "max_abs_diff_rel"},
    "fixtures": {"amat"},  # how generated fixtures were made (tools.mosflm_matrix); not used by the run
}
_REQUIRED = {
    "case": {"item", "bundle_root", "ledger", "plan"},
    "tests": {"parity_selector"},
    "run": {"shape", "inputs", "argv", "c_floatfile", "py_floatfile"},
}


class ConfigError(ValueError):
    """A case file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class CaseConfig:
    path: Path
    item: str
    title: str
    bundle_root: str
    ledger: str
    plan: str
    plan_items: tuple[str, ...]
    collect: tuple[str, ...]
    parity_selector: str
    shape: tuple[int, int]
    dtype: str
    device: str
    timeout_s: float
    inputs: tuple[str, ...]
    argv: tuple[str, ...]
    c_floatfile: str
    py_floatfile: str
    # How to start our CLI; "{python}" is the interpreter running the pipeline step.
    py_command: tuple[str, ...]
    env: dict = field(default_factory=dict)
    gate: Thresholds = PHASE_D_GATE
    fixtures: dict = field(default_factory=dict)

    def c_argv(self, c_bin) -> list[str]:
        """C command line (program first), the float image named ``c_floatfile``."""
        return [str(c_bin), *self._argv(self.c_floatfile)]

    def py_argv(self, python) -> list[str]:
        """PyTorch command line: ``py_command`` + the same argv + our ``-dtype``/``-device``."""
        cmd = [str(python) if a == "{python}" else a for a in self.py_command]
        return [*cmd, *self.py_args()]

    def py_args(self) -> list[str]:
        """Arguments of our CLI (no program): the case argv, float image ``py_floatfile``, dtype, device."""
        return [*self._argv(self.py_floatfile), "-dtype", self.dtype, "-device", self.device]

    def _argv(self, floatfile: str) -> list[str]:
        return [a.replace("{floatfile}", floatfile) for a in self.argv]

    def resolve(self, rel: str, root: Path = REPO) -> Path:
        """A path from the file, relative to the repository root unless absolute."""
        p = Path(rel)
        return p if p.is_absolute() else root / p


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_raw(path: Path, seen: tuple = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' loop")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"case config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(_load_raw(path.parent / parent, (*seen, path)), data)


def load_case(path=None) -> CaseConfig:
    """Load and validate a case file (default: the SOURCE-WEIGHT-001 Phase D case)."""
    path = Path(path) if path else DEFAULT_CONFIG
    raw = _load_raw(path)
    for table, keys in raw.items():
        if table not in _SCHEMA:
            raise ConfigError(f"{path}: unknown table [{table}]")
        if not isinstance(keys, dict):
            raise ConfigError(f"{path}: {table} must be a table")
        unknown = set(keys) - _SCHEMA[table]
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) in [{table}]: {', '.join(sorted(unknown))}")
    for table, keys in _REQUIRED.items():
        missing = keys - set(raw.get(table, {}))
        if missing:
            raise ConfigError(f"{path}: missing key(s) in [{table}]: {', '.join(sorted(missing))}")
    case, tests, run = raw["case"], raw["tests"], raw["run"]
    gate_raw = raw.get("gate", {})
    gate = Thresholds(
        min_correlation=float(gate_raw.get("min_correlation", PHASE_D_GATE.min_correlation)),
        max_sum_ratio_dev=float(gate_raw.get("max_sum_ratio_dev", PHASE_D_GATE.max_sum_ratio_dev)),
        max_abs_diff_rel=gate_raw.get("max_abs_diff_rel", PHASE_D_GATE.max_abs_diff_rel),
    )
    shape = tuple(int(x) for x in run["shape"])
    if len(shape) != 2 or min(shape) <= 0:
        raise ConfigError(f"{path}: [run] shape must be [slow, fast] with positive sizes")
    argv = tuple(str(a) for a in run["argv"])
    if "{floatfile}" not in argv:
        raise ConfigError(f"{path}: [run] argv must contain '-floatfile', '{{floatfile}}'")
    if run.get("dtype", "float64") not in ("float32", "float64"):
        raise ConfigError(f"{path}: [run] dtype must be float32 or float64")
    return CaseConfig(
        path=path.resolve(),
        item=str(case["item"]),
        title=str(case.get("title", case["item"])),
        bundle_root=str(case["bundle_root"]),
        ledger=str(case["ledger"]),
        plan=str(case["plan"]),
        plan_items=tuple(case.get("plan_items", ())),
        collect=tuple(tests.get("collect", ())),
        parity_selector=str(tests["parity_selector"]),
        shape=(shape[0], shape[1]),
        dtype=str(run.get("dtype", "float64")),
        device=str(run.get("device", "cpu")),
        timeout_s=float(run.get("timeout_s", 600)),
        inputs=tuple(str(p) for p in run["inputs"]),
        argv=argv,
        c_floatfile=str(run["c_floatfile"]),
        py_floatfile=str(run["py_floatfile"]),
        py_command=tuple(run.get("py_command", ("{python}", "-m", "nanobrag_torch"))),
        env={str(k): str(v) for k, v in run.get("env", {}).items()},
        gate=gate,
        fixtures=dict(raw.get("fixtures", {})),
    )
