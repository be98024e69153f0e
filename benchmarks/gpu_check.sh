#!/usr/bin/env bash
# Every GPU check of issue 9 in one go, about 5-6 minutes of device time:
#   0. the GPU tests (pytest -k "gpu or device": image views on the device, video_motion --quick
#      training its predictors on the GPU; a failure is reported and the checks go on);
#   1. the headline: SimCLR on the full CIFAR-10 train split with lightly's own benchmark settings
#      (ResNet-18, batch 512, bf16, 25 epochs, kNN k=200 on the test split), multissl and lightly
#      side by side (benchmarks/cifar10_knn.py --device cuda; lightly alone took 159 s on an H200);
#   2. per modality: end-to-end vs model-only samples/s, ratio, host/device peak memory
#      (benchmarks/modality_throughput.py --device cuda) for text, timeseries, video, signature, image;
#   3. streaming on the GPU (benchmarks/scaling.py at 10k and 100k records, 150 steps each): the
#      Parquet stream's prefetch thread with pinned memory and non-blocking copies feeding CUDA;
#   4. with GPU_CHECK_FULL=1 (about 2 more minutes): image throughput on one shard with the
#      per-part breakdown (benchmarks/image_throughput.py --device cuda, multissl vs lightly, 2
#      rounds), then the Trainer's fast-path switches, multissl only, 1 round each: all off
#      (--channels-last off --fused off: the plain path) and --compile on (inductor; the 20
#      warmup steps absorb the compilation). $OUT returns 8 files at most: these three JSON
#      files are then left out (the tables are in gpu_check.log).
# JSON results go to $OUT when it is set (the device machine's return folder), else
# benchmarks/results/gpu/; the console log is kept there as gpu_check.log.
#
# Two steps, because the device machine sees only the project tree (64 MiB) and has no internet:
#
#   benchmarks/gpu_check.sh prepare    # HERE: copy CIFAR-10 (6 Parquet shards, 57 MB) into shared_data/ and download
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
    SRC=${MULTISSL_SHARED:-/work/shared}/data/cifar10_jpeg_parquet
    mkdir -p "$DATA"
    cp "$SRC"/train-0000?-of-00005.parquet "$SRC"/test-00000-of-00001.parquet "$DATA/"
    rm -rf .whl && mkdir -p .whl
    # versions as in the development environment; pure-Python wheels except multiprocess/dill (py3 any)
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl lightly==1.6.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    du -sh "$DATA" .whl
    echo "carried in all (64 MiB allowed): $(( ($(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) + $(du -sb shared_data .whl | awk '{s+=$1} END {print s}')) / 1048576 )) MiB"
    exit 0
fi

DEVICE=${GPU_CHECK_DEVICE:-cuda}
RESULTS=${OUT:-$ROOT/benchmarks/results/gpu}
mkdir -p "$RESULTS"
exec > >(tee "$RESULTS/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 MULTISSL_SHARED=$ROOT/shared_data
source benchmarks/_device_env.sh
for f in "$DATA/$SHARD" "$DATA/test-00000-of-00001.parquet"; do
    if [[ ! -f "$f" ]]; then
        echo "gpu_check: $f missing; run 'benchmarks/gpu_check.sh prepare' here and carry shared_data" >&2
        exit 2
    fi
done
$PY - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

start=$SECONDS
if [[ "$DEVICE" == cpu ]]; then
    $PY benchmarks/cifar10_knn.py --quick --data "$DATA" --output "$RESULTS/cifar10_knn_cpu_quick.json"
    $PY benchmarks/modality_throughput.py --modality all --quick --output "$RESULTS"
    $PY benchmarks/scaling.py --quick --repeats 1 --output "$RESULTS/scaling_cpu_quick.json"
    if [[ "${GPU_CHECK_FULL:-0}" != 0 ]]; then
        $PY benchmarks/image_throughput.py --quick --no-breakdown --output "$RESULTS/image_throughput_cpu_quick.json"
        $PY benchmarks/image_throughput.py --quick --no-lightly --channels-last on --fused on --compile aot_eager \
            --output "$RESULTS/image_throughput_cpu_quick_switches.json"
    fi
else
    # the GPU-only tests (image views on the device; video_motion --quick: every stage on the GPU)
    $PY -m pytest -q -rs -p no:cacheprovider -k "gpu or device" tests/adapters/test_image_adapter.py tests/recipes/test_video_motion.py || true
    # 50,000 + 10,000 CIFAR-10 images, 25 epochs of batch 512, bf16; lightly with min(12, CPUs) workers
    $PY benchmarks/cifar10_knn.py --device cuda --data "$DATA" --output "$RESULTS/cifar10_knn_cuda.json"
    $PY benchmarks/modality_throughput.py --modality all --device cuda --output "$RESULTS"
    $PY benchmarks/scaling.py --sizes 10000 100000 --repeats 1 --max-steps 150 --threads 4 \
        --output "$RESULTS/scaling_cuda.json"
    if [[ "${GPU_CHECK_FULL:-0}" != 0 ]]; then
        # 10,000 CIFAR-10 images, batch 512, bf16, 20 warmup + 50 timed steps, 2 rounds; lightly with 8 workers
        $PY benchmarks/image_throughput.py --device cuda --rounds 2 --output "$RESULTS/image_throughput_cuda.json"
        $PY benchmarks/image_throughput.py --device cuda --rounds 1 --no-lightly --channels-last off --fused off \
            --output "$RESULTS/image_throughput_cuda_plain.json"
        $PY benchmarks/image_throughput.py --device cuda --rounds 1 --no-lightly --compile on \
            --output "$RESULTS/image_throughput_cuda_compile.json"
    fi
fi
echo "gpu_check: done in $((SECONDS - start)) s; results in $RESULTS"
ls -l "$RESULTS"
