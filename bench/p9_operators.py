"""The three operators of P9, runnable two ways with the same numpy work in between.

    python p9_operators.py STAGE                 inside `clara run`: shared-memory variables
                                                 through the driver API (zero copy)
    python p9_operators.py STAGE --files DIR     standalone: .npy files in DIR on disk

STAGE is `produce` (fill `data`), `transform` (`result` = `data` + 1) or `consume` (print a
checksum of `result`). Nothing here imports the benchmark package: it runs as a script.
"""

from __future__ import annotations

import os
import sys

import numpy as np

SHAPE_ENV = "P9_SHAPE"  # comma-separated, float32


def produce(out: np.ndarray) -> None:
    """Fill the volume (a ramp along the first axis, cheap to compute)."""
    for index in range(out.shape[0]):
        out[index].fill(float(index))


def transform(data: np.ndarray, out: np.ndarray) -> None:
    """out = data + 1."""
    np.add(data, np.float32(1.0), out=out)


def consume(result: np.ndarray) -> float:
    """A checksum of the result."""
    return float(result.sum(dtype=np.float64))


def _shape() -> tuple[int, ...]:
    return tuple(int(d) for d in os.environ[SHAPE_ENV].split(","))


def run_files(stage: str, directory: str) -> None:
    """One stage exchanging .npy files in `directory`."""
    data, result = os.path.join(directory, "data.npy"), os.path.join(directory, "result.npy")
    if stage == "produce":
        out = np.empty(_shape(), dtype=np.float32)
        produce(out)
        np.save(data, out)
    elif stage == "transform":
        inp = np.load(data)
        out = np.empty_like(inp)
        transform(inp, out)
        np.save(result, out)
    else:
        print(f"checksum={consume(np.load(result))}")


def run_clara(stage: str) -> None:
    """One stage as an operator of `clara run` (driver API, shared memory)."""
    from clara_core.pipeline import Driver

    def execute(driver: Driver, payload) -> bool:  # type: ignore[no-untyped-def]
        if stage == "produce":
            with payload.outputs["data"].mapped("w") as out:
                produce(out)
        elif stage == "transform":
            with (
                payload.inputs["data"].mapped("r") as inp,
                payload.outputs["result"].mapped("w") as out,
            ):
                transform(inp, out)
        else:
            with payload.inputs["result"].mapped("r") as inp:
                print(f"checksum={consume(inp)}")
        return True

    Driver(execute=execute).run()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--files":
        run_files(sys.argv[1], sys.argv[3])
    else:
        run_clara(sys.argv[1])
