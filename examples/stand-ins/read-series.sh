#!/usr/bin/env bash
# Stand-in for a DICOM reader: every slice of the payload becomes one line of volume.txt.
set -euo pipefail
input=$1 output=$2 logs=$3
find "$input" -name '*.dcm' | sort | while read -r slice; do
  awk '{ print $3, $NF }' "$slice"
done > "$output/volume.txt"
echo "read $(wc -l < "$output/volume.txt") slices from the payload" | tee "$logs/reader.log"
