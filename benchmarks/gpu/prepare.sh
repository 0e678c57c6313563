#!/usr/bin/env bash
# Everything the device call carries in benchmarks/gpu/payload/ (git ignores it): the wheels of
# wheels.txt (fetch-wheels.sh) and a copy of icg-dev from ../shared/data, which does not travel.
# Prints what would travel: the device tool takes 64 MiB in all, the working tree included.
set -euo pipefail
cd "$(dirname "$0")"
./fetch-wheels.sh
rm -rf payload/icg-dev
cp -r ../../../shared/data/icg-dev payload/icg-dev
repo=$(cd ../.. && git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -sb payload | cut -f1)
echo "working tree $((repo / 1048576)) MiB + payload $((carried / 1048576)) MiB = $(((repo + carried) / 1048576)) MiB (limit 64)"
