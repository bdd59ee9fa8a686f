"""A plain numpy filter (no clara in it): .npy on stdin -> 3x3x3 box blur -> .npy on stdout.

$PASSES (default 2) sets how many times the blur is applied.

The shell operator `smooth.sh` pipes a shared-memory variable through it with `clara map`.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np


def box_blur(volume: np.ndarray, passes: int = 2) -> np.ndarray:
    """Mean over each voxel's 3x3x3 neighbourhood (edges repeated), `passes` times."""
    out = volume.astype(np.float32, copy=True)
    for _ in range(passes):
        for axis in range(out.ndim):
            padded = np.concatenate([out.take([0], axis), out, out.take([-1], axis)], axis=axis)
            n = out.shape[axis]
            out = (
                padded.take(range(0, n), axis)
                + padded.take(range(1, n + 1), axis)
                + padded.take(range(2, n + 2), axis)
            ) / np.float32(3)
    return out


if __name__ == "__main__":
    volume = np.lib.format.read_array(io.BytesIO(sys.stdin.buffer.read()))  # pipes can't seek
    passes = int(os.environ.get("PASSES", "2"))  # the operator's YAML `variables`
    np.lib.format.write_array(sys.stdout.buffer, box_blur(volume, passes))
