#!/usr/bin/env bash
# A producer: computes its data (here: the numbers 1..1000, after a second of "work"),
# then fills and publishes `numbers` in one step. Nobody can see `numbers` before its
# data is complete, and if the input fails nothing is left behind.
set -euo pipefail

sleep 1  # the work: the consumer, started at the same time, is already waiting
seq 1 1000 | clara create allocation numbers --dtype i64 --in - --format txt >/dev/null
echo "producer: published numbers"
