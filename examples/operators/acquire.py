"""Operator `acquire`: a noisy ellipsoid phantom, sized at run time (driver API).

Shows Clara's dynamic-variable life-cycle: the volume is declared [-1, 128, 128], so this
operator sets the slice count with update_shape(), allocates, and fills the map in place
(no copy); `spacing` is static, pre-allocated by `clara run`, and simply written.
"""

from __future__ import annotations

import os

import numpy as np

from clara_core.pipeline import Driver


def execute(driver: Driver, payload) -> bool:
    """Fill the outputs: volume (dynamic), spacing (static), series-uid (string)."""
    slices = int(os.environ.get("SLICES", "48"))
    noise = float(os.environ.get("NOISE", "0.35"))
    volume = payload.outputs["volume"]
    volume.update_shape((slices, *volume.declared_shape[1:]))
    volume.allocate()
    rng = np.random.default_rng(7)
    with volume.mapped("w") as array:  # a zero-copy view of the shared memory
        z, y, x = np.ogrid[: array.shape[0], : array.shape[1], : array.shape[2]]
        cz, cy, cx = (array.shape[0] - 1) / 2, (array.shape[1] - 1) / 2, (array.shape[2] - 1) / 2
        inside = ((z - cz) / (0.4 * slices)) ** 2 + ((y - cy) / 40) ** 2 + ((x - cx) / 52) ** 2
        array[...] = (inside <= 1.0).astype(np.float32)
        array += rng.normal(0.0, noise, array.shape).astype(np.float32)
    payload.outputs["spacing"].write([2.5, 0.8, 0.8])  # mm: slice, row, column
    payload.outputs["series-uid"].write_text(f"1.2.826.0.1.3680043.10.{driver.job_id.int % 10**12}")
    print(f"acquire: volume {volume.shape} float32, {volume.nbytes / 2**20:.1f} MiB, noise {noise}")
    return True


if __name__ == "__main__":
    Driver(execute=execute).run()
