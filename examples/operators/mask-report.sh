#!/usr/bin/env bash
# Operator `report` of ct-native.yaml: a plain shell script that reads what the C++
# operator wrote (a count and a mask) with `clara map`, checks one against the other, and
# writes a text report to its disk output ($CLARA_OUTPUT, created by clara run).
set -euo pipefail

voxels=$(clara map voxels --read --out - --format txt)
# The mask is one byte per voxel, 0 or 1: its ones, counted here, must be the count.
ones=$(clara map mask --read --out - | tr -d '\000' | wc -c)
read -r dz dy dx <<< "$(clara map spacing --read --out - --format txt | tr "\n" " ")"
{
  echo "CT threshold report"
  echo "  job       $CLARA_PIPELINE $CLARA_JOB_ID"
  echo "  series    $(clara map series-uid --read --out -)"
  echo "  voxels    $voxels above the level (mask: $ones)"
  awk -v n="$voxels" -v z="$dz" -v y="$dy" -v x="$dx" \
    'BEGIN { printf "  volume    %.1f mL\n", n * z * y * x / 1000 }'
} > "$CLARA_OUTPUT/report.txt"
cat "$CLARA_OUTPUT/report.txt"
if [ "$ones" != "$voxels" ]; then
  echo "report: the mask holds $ones ones but the count is $voxels" >&2
  exit 1
fi
