#!/usr/bin/env bash
# Issue 5 on a lent GPU: pretrain the video_motion recipe's encoder at the issue's full scale
# (10,000 Moving MNIST sequences of 64x64 frames, c3d_small width 16, batch 16, past-and-future
# prediction from the start: '{"past_frames": 5, "future_frames": 5}') for far more epochs than
# the CPU allows, and bring the saved models back; the downstream stages (predictor, few-label
# motion direction over 10 draws) then run on the CPU with --ssl-model, so their scratch
# baselines are the CPU runs' own, draw for draw (docs/recipes/video_motion.md).
#
#   benchmarks/gpu_video_motion.sh prepare   # HERE: digits into shared_data/, wheels into .whl/
#   benchmarks/gpu_video_motion.sh           # THERE, with carry: ["shared_data", ".whl"]
#
# Steps there, all inside GPU_BUDGET_S seconds (default 500) of training time:
#   1. one epoch, to time an epoch;
#   2. 32 epochs (the CPU's best schedule was 24 future-only + 8 past-and-future epochs), when
#      at least 96 epochs fit in what is left;
#   3. as many epochs as fit in the rest (at least 8, at most GPU_MAX_EPOCHS, default 200).
# Each finished run's <output>/final is packed into $OUT/<name>.tar.gz at once (the device
# machine returns at most 8 files); the console log is $OUT/gpu_video_motion.log.
# GPU_CHECK_DEVICE=cpu runs the same sequence with --quick sizes here (a dry run of the script).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=$ROOT/shared_data/data/mnist_test

if [[ "${1:-}" == "prepare" ]]; then
    set -e
    mkdir -p "$DATA"
    cp "${MULTISSL_SHARED:-/work/shared}"/data/mnist_test/t10k-images-idx3-ubyte.gz "$DATA/"
    rm -rf .whl && mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    du -sh "$DATA" .whl
    exit 0
fi

DEVICE=${GPU_CHECK_DEVICE:-cuda}
RESULTS=${OUT:-$ROOT/benchmarks/results/gpu}
WORK=${GPU_WORK:-/tmp/gpu_video_motion}
BUDGET=${GPU_BUDGET_S:-500}
MAX_EPOCHS=${GPU_MAX_EPOCHS:-200}
mkdir -p "$RESULTS" && rm -rf "$WORK" && mkdir -p "$WORK"
exec > >(tee "$RESULTS/gpu_video_motion.log") 2>&1
export PYTHONUNBUFFERED=1
source benchmarks/_device_env.sh
[[ -f "$DATA/t10k-images-idx3-ubyte.gz" ]] || { echo "gpu_video_motion: $DATA missing; run prepare here" >&2; exit 2; }
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
[[ "$DEVICE" == cpu ]] && export CUDA_VISIBLE_DEVICES=""

SIZES=(--num-sequences 10000 --num-test 300 --frame-size 64)
[[ "$DEVICE" == cpu ]] && SIZES=(--quick)
start=$SECONDS
pretrain() {  # name epochs: pretrain, pack <name>/final into $RESULTS/<name>.tar.gz, print the loss curve
    local name=$1 epochs=$2
    $PY -m multissl.recipes.video_motion --data "$DATA" --output "$WORK/$name" "${SIZES[@]}" \
        --ssl-method future_frame --ssl-hparams '{"past_frames": 5, "future_frames": 5}' --ssl-epochs "$epochs" \
        --batch-size 16 --pretrain-only --no-progress || return 1
    tar -czf "$RESULTS/$name.tar.gz" -C "$WORK" "$name"
    $PY -c "import json,sys; h=json.load(open(sys.argv[1]))['history']; print('loss by epoch', [round(r['loss'], 3) for r in h])" \
        "$WORK/$name/final/config.json"
}
seconds_of() { grep -oE "done in [0-9]+s" "$WORK/$1.log" | grep -oE "[0-9]+"; }

pretrain probe1 1 | tee "$WORK/probe1.log" || exit 1
t_probe=$((SECONDS - start)); epoch_s=$(seconds_of probe1); epoch_s=$((epoch_s > 0 ? epoch_s : 1))
overhead=$((t_probe - epoch_s))
echo "gpu_video_motion: one epoch ${epoch_s}s of training, ${overhead}s around it"
fits() { echo $(((BUDGET - (SECONDS - start) - overhead - 15) / epoch_s)); }
if (( $(fits) >= 96 )); then  # room for the 32-epoch comparison and a run at least twice as long
    pretrain pastfuture32 32 | tee "$WORK/pastfuture32.log"
fi
epochs=$(fits); epochs=$((epochs > MAX_EPOCHS ? MAX_EPOCHS : epochs))
if (( epochs >= 8 )); then
    pretrain "pastfuture$epochs" "$epochs" | tee "$WORK/pastfuture$epochs.log"
fi
echo "gpu_video_motion: done in $((SECONDS - start)) s"
ls -l "$RESULTS"
