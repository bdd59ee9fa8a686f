#!/usr/bin/env bash
# Operator `report`: a plain shell script that reads three shared-memory variables with
# `clara map` (a string, a primitive, a small table) and writes a text report to its disk
# output ($CLARA_OUTPUT, created by clara run).
set -euo pipefail

uid=$(clara map series-uid --read --out -)
ml=$(clara map volume-ml --read --out - --format txt)
{
  echo "CT smoothing report"
  echo "  job       $CLARA_PIPELINE $CLARA_JOB_ID"
  echo "  series    $uid"
  printf '  phantom   %.1f mL\n' "$ml"
  echo "  statistics (min max mean std), raw then smoothed:"
  clara map stats --read --out - --format txt \
    | awk '{ printf "    %9.4f %9.4f %9.4f %9.4f\n", $1, $2, $3, $4 }'
} > "$CLARA_OUTPUT/report.txt"

cat "$CLARA_OUTPUT/report.txt"
