"""A stand-in simulator for harness tests: replays the C reference outputs of the corpus case whose argv
matches its own (our -dtype/-device flags removed). Corpus from $NB_GOLDEN_DIR.

Behaves like the port is specified to: exit 0 and write the case's files, or, for a case C refused,
one line on stderr and exit 1 with nothing written. Unknown argv: exit 2.
Environment knobs for tests: REPLAY_SCALE multiplies the float image (to fake a physics error).
"""
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np


def main(argv):
    args, i = [], 0
    while i < len(argv):
        if argv[i] in ("-dtype", "-device"):
            i += 2
            continue
        args.append(argv[i])
        i += 1
    root = Path(os.environ["NB_GOLDEN_DIR"])
    data = json.loads((root / "cases.json").read_text())
    for case in data["cases"] + data.get("c_behaviour_records", []):
        if case["argv"] == args:
            break
    else:
        print("replay_sim: no corpus case has this argv", file=sys.stderr)
        return 2
    if case["exit_code"] != 0:
        print(f"replay_sim: refusing input of case {case['id']}", file=sys.stderr)
        return 1
    scale = float(os.environ.get("REPLAY_SCALE", "1"))
    for kind, name in case["outputs"].items():
        src = root / "out" / case["id"] / name
        if kind == "floatfile" and scale != 1:
            (np.fromfile(src, dtype="<f4") * np.float32(scale)).astype("<f4").tofile(name)
        else:
            shutil.copyfile(src, name)
    print(f"replayed {case['id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
