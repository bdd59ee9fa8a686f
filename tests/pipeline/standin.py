"""A stand-in for a containerised Clara operator, bound with `clara run --bind OP='python
standin.py [ARG...]'` in the realistic-pipeline tests.

It writes, into every declared disk output folder, `lineage.txt` (the lines of every
input folder's lineage.txt, then its own operator name: data provably flowed through
the folders) and `<operator>.json` (what it was told: argv, CLARA_PATHS, its variables,
and the Driver API's payload entries). Arguments `--expect-file PATH` make it fail unless
PATH exists (the local folder that replaced a container path in its arguments).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

from clara_core.pipeline import Driver

SHOWN = ("CLARA_INPUT", "CLARA_OUTPUT", "CLARA_PAYLOAD", "NVIDIA_", "ORGAN", "MODEL", "LEVEL")


def execute(driver: Driver, payload) -> bool:
    argv = sys.argv[1:]
    for flag, value in itertools.pairwise(argv):
        if flag == "--expect-file" and not os.path.exists(value):
            print(f"missing {value}")
            return False
    lineage: list[str] = []
    for entry in payload.input_entries:
        for name in sorted(os.listdir(entry.path)):
            if name == "lineage.txt":
                lineage += Path(entry.path, name).read_text().split()
    lineage.append(driver.stage_name or "")
    record = {
        "operator": driver.stage_name,
        "argv": argv,
        "cwd": os.getcwd(),
        "paths": json.loads(os.environ["CLARA_PATHS"]),
        "env": {k: v for k, v in os.environ.items() if k.startswith(SHOWN)},
        "input_entries": [[e.name, e.path] for e in payload.input_entries],
        "output_entries": [[e.name, e.path] for e in payload.output_entries],
    }
    for entry in payload.output_entries:
        Path(entry.path, "lineage.txt").write_text("\n".join(lineage) + "\n")
        Path(entry.path, f"{driver.stage_name}.json").write_text(json.dumps(record))
    print(f"{driver.stage_name}: {len(payload.input_entries)} inputs, lineage {len(lineage)}")
    return True


if __name__ == "__main__":
    Driver(execute=execute).run()
