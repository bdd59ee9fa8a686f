#!/usr/bin/env bash
# Stand-in for a DICOM writer: pairs each slice with its mask and publishes a summary.
set -euo pipefail
mask=$1 original=$2 output=$3 publish=$4
paste -d' ' "$original/volume.txt" "$mask/mask.txt" > "$output/series.txt"
{
  echo "dicom-seg summary ($CLARA_PIPELINE $CLARA_JOB_ID)"
  awk '{ printf "  slice %s  value %s  %s\n", $1, $2, $4 }' "$output/series.txt"
} > "$publish/summary.txt"
cat "$publish/summary.txt"
