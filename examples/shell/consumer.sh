#!/usr/bin/env bash
# A consumer: started together with its producer, it waits (--wait) until `numbers` is
# published and complete, then reads it. Without --wait it would fail at once: the
# name does not exist yet (exit 3), or its data is not written yet (exit 6).
set -euo pipefail

clara map numbers --read --wait --timeout 60 --out - --format txt \
  | awk '{ sum += $1 } END { print "consumer: sum", sum }'
