"""Operator `segment`: threshold the raw volume into a mask and measure it (driver API).

Runs in parallel with `smooth`: both only read `volume`. The mask's slice count follows
the volume's, which this operator learns from its input at run time.
"""

from __future__ import annotations

import numpy as np

from clara_core.pipeline import Driver

THRESHOLD = 0.5


def execute(driver: Driver, payload) -> bool:
    """mask = volume > THRESHOLD (uint8, sized like the volume); volume-ml = its volume."""
    spacing = payload.inputs["spacing"].read()
    mask = payload.outputs["mask"]
    with payload.inputs["volume"].mapped() as volume:
        mask.update_shape(volume.shape)
        mask.allocate()
        with mask.mapped("w") as out:
            np.greater(volume, THRESHOLD, out=out.view(bool))
            voxels = int(np.count_nonzero(out))
    millilitres = voxels * float(np.prod(spacing)) / 1000.0
    payload.outputs["volume-ml"].write([millilitres])
    print(f"segment: {voxels} voxels above {THRESHOLD}, {millilitres:.1f} mL")
    return True


if __name__ == "__main__":
    Driver(execute=execute).run()
