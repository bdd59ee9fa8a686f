"""Operator `measure`: statistics before and after smoothing (driver API).

Maps the two volumes read-only and zero-copy, and writes two static outputs: a [2, 4]
table and a float64 primitive. prepare() runs before the inputs are read; cleanup() after.
"""

from __future__ import annotations

import numpy as np

from clara_core.pipeline import Driver

THRESHOLD = 0.5


def prepare(driver: Driver) -> bool:
    """Nothing to load here; a real operator would load a model now."""
    print(f"measure: prepared stage {driver.stage_name} of job {driver.job_name}")
    return True


def execute(driver: Driver, payload) -> bool:
    """Compute min, max, mean and std of both volumes, and the phantom's volume in mL."""
    volume, smoothed = payload.inputs["volume"], payload.inputs["smoothed"]
    spacing = payload.inputs["spacing"].read()
    with volume.mapped() as raw, smoothed.mapped() as smooth:
        stats = np.array([[a.min(), a.max(), a.mean(), a.std()] for a in (raw, smooth)])
        voxels = int(np.count_nonzero(smooth > THRESHOLD))
    payload.outputs["stats"].write(stats)
    millilitres = voxels * float(np.prod(spacing)) / 1000.0
    payload.outputs["volume-ml"].write([millilitres])
    print(f"measure: std {stats[0, 3]:.3f} -> {stats[1, 3]:.3f}, phantom {millilitres:.1f} mL")
    return True


def cleanup(driver: Driver) -> bool:
    """Called once after execute, whatever happened."""
    return True


if __name__ == "__main__":
    Driver(prepare=prepare, execute=execute, cleanup=cleanup).run()
