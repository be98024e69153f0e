#!/usr/bin/env bash
# Every GPU check of issue 9 in one go, sized for < 5 minutes of device time:
#   1. image: multissl vs lightly side by side (benchmarks/image_throughput.py --device cuda) on one
#      real CIFAR-10 shard (10,000 JPEGs), bf16, batch 512;
#   2. per modality: end-to-end vs model-only samples/s, ratio, host/device peak memory
#      (benchmarks/modality_throughput.py --device cuda) for text, timeseries, video, signature, image;
#   3. streaming on the GPU (benchmarks/scaling.py at 10k and 100k records, 150 steps each): the
#      Parquet stream's prefetch thread with pinned memory and non-blocking copies feeding CUDA;
#   4. the Trainer's fast-path switches on the image run, multissl only, 1 round each: all off
#      (--channels-last off --fused off: the plain path) and --compile on (inductor; the 20 warmup
#      steps absorb the compilation). Run 1 has the defaults (channels_last + fused on CUDA).
#      GPU_CHECK_SWITCHES=0 skips step 4.
# JSON results go to $OUT when it is set (the device machine's return folder), else
# benchmarks/results/gpu/; the console log is kept there as gpu_check.log.
#
# Two steps, because the device machine sees only the project tree (64 MiB) and has no internet:
#
#   benchmarks/gpu_check.sh prepare    # HERE: copy one CIFAR-10 shard into shared_data/ and download
#                                      # the wheels the GPU image lacks (lightly, datasets, dill,
#                                      # multiprocess) into .whl/; both folders are git-ignored
#   benchmarks/gpu_check.sh            # THERE, run with carry: ["shared_data", ".whl"]
#
# GPU_CHECK_DEVICE=cpu benchmarks/gpu_check.sh runs the same sequence with --quick sizes on the
# CPU (a dry run of the script itself, minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARD=train-00000-of-00005.parquet
DATA=$ROOT/shared_data/data/cifar10_jpeg_parquet

if [[ "${1:-}" == "prepare" ]]; then
    SRC=${MULTISSL_SHARED:-/work/shared}/data/cifar10_jpeg_parquet/$SHARD
    mkdir -p "$DATA"
    cp "$SRC" "$DATA/"
    rm -rf .whl && mkdir -p .whl
    # versions as in the development environment; pure-Python wheels except multiprocess/dill (py3 any)
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl lightly==1.6.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    du -sh "$DATA" .whl
    exit 0
fi

DEVICE=${GPU_CHECK_DEVICE:-cuda}
RESULTS=${OUT:-$ROOT/benchmarks/results/gpu}
mkdir -p "$RESULTS"
exec > >(tee "$RESULTS/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 MULTISSL_SHARED=$ROOT/shared_data
PY=${PYTHON:-python3}
[[ -x .venv/bin/python && "$DEVICE" == cpu ]] && PY=.venv/bin/python

if ! $PY -c "import multissl.adapters" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    # editable install: multissl.adapters / multissl.recipes are mapped folders (pyproject.toml)
    $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
fi
if [[ ! -f "$DATA/$SHARD" ]]; then
    echo "gpu_check: $DATA/$SHARD missing; run 'benchmarks/gpu_check.sh prepare' here and carry shared_data" >&2
    exit 2
fi
$PY - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

start=$SECONDS
if [[ "$DEVICE" == cpu ]]; then
    $PY benchmarks/image_throughput.py --quick --no-breakdown --output "$RESULTS/image_throughput_cpu_quick.json"
    $PY benchmarks/modality_throughput.py --modality all --quick --output "$RESULTS"
    $PY benchmarks/scaling.py --quick --repeats 1 --output "$RESULTS/scaling_cpu_quick.json"
    if [[ "${GPU_CHECK_SWITCHES:-1}" != 0 ]]; then
        $PY benchmarks/image_throughput.py --quick --no-lightly --channels-last on --fused on --compile aot_eager \
            --output "$RESULTS/image_throughput_cpu_quick_switches.json"
    fi
else
    # 10,000 CIFAR-10 images, batch 512, bf16, 20 warmup + 50 timed steps, 2 rounds; lightly with 8 workers
    $PY benchmarks/image_throughput.py --device cuda --rounds 2 --output "$RESULTS/image_throughput_cuda.json"
    $PY benchmarks/modality_throughput.py --modality all --device cuda --output "$RESULTS"
    $PY benchmarks/scaling.py --sizes 10000 100000 --repeats 1 --max-steps 150 --threads 4 \
        --output "$RESULTS/scaling_cuda.json"
    if [[ "${GPU_CHECK_SWITCHES:-1}" != 0 ]]; then
        $PY benchmarks/image_throughput.py --device cuda --rounds 1 --no-lightly --channels-last off --fused off \
            --output "$RESULTS/image_throughput_cuda_plain.json"
        $PY benchmarks/image_throughput.py --device cuda --rounds 1 --no-lightly --compile on \
            --output "$RESULTS/image_throughput_cuda_compile.json"
    fi
fi
echo "gpu_check: done in $((SECONDS - start)) s; results in $RESULTS"
ls -l "$RESULTS"
