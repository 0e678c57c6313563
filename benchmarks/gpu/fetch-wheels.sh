#!/usr/bin/env bash
# Download the wheels in wheels.txt for the device machine's Python (3.12, x86-64 Linux) into
# benchmarks/gpu/payload/wheels/, which git ignores and the device call carries, each at the version
# the project's environment runs (pins.py; GDC_PYTHON names another python). No dependencies are
# resolved (--no-deps): wheels.txt names every one the device lacks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
into=$here/payload/wheels
rm -rf "$into"
mkdir -p "$into"
platforms=()
for tag in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
           manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
python=${GDC_PYTHON:-$here/../../.venv/bin/python}
"$python" "$here/pins.py" | xargs python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp "${platforms[@]}" --dest "$into"
ls "$into"
du -sh "$into"
