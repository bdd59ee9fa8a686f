#!/usr/bin/env bash
# Operator `smooth`: a plain shell script. `clara map` resolves `volume` and `smoothed`
# among this operator's declared input and output (clara run exported them), streams the
# read-only input out as .npy, and writes the filter's result in: the dynamic output is
# sized and allocated from the .npy header.
set -euo pipefail

clara map volume --read --out - --format npy \
  | python operators/box_blur.py \
  | clara map smoothed --write --in - --format npy --json >/dev/null

echo "smooth: box-blurred the volume through a pipe"
