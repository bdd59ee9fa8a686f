#!/usr/bin/env bash
# Stand-in for a segmentation model: marks the slices whose value passes a threshold.
set -euo pipefail
input=$1 output=$2
awk -v organ="${ORGAN:-organ}" '{ print $1, ($2 > 100 ? organ : "-") }' \
  "$input/volume.txt" > "$output/mask.txt"
echo "segmented ${ORGAN:-organ} in $(grep -vc ' -$' "$output/mask.txt") of $(wc -l < "$output/mask.txt") slices"
