#!/usr/bin/env bash
# Start a producer and its consumer together; --wait makes the consumer wait for the data.
#   bash examples/shell/run.sh
set -euo pipefail
cd "$(dirname "$0")"

export CLARA_CONTEXT="numbers-$$"
clara create context "$CLARA_CONTEXT" --owner-pid $$ >/dev/null  # reclaimable if we die
producer=""
finish() {  # stop the producer if the consumer failed, then remove everything
  if [ -n "$producer" ]; then kill "$producer" 2>/dev/null || true; wait "$producer" || true; fi
  clara destroy context "$CLARA_CONTEXT" >/dev/null
}
trap finish EXIT

bash producer.sh &
producer=$!
bash consumer.sh
wait "$producer"
producer=""
