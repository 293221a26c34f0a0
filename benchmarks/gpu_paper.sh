#!/usr/bin/env bash
# The paper-scale benchmark on one GPU machine, in one command (replaces gpu_full.sh and its by-hand
# merge): train ResNet-50 and VGG-16-BN at full width for CIFAR-10 at 32x32 (checkpoints with their
# cards in assets/cifar10/), then run the full grid on them (every class, 3 seeds, every method,
# retrain with each model's own recipe) as Ray tasks on a local Ray, resumable.
#
#   bash benchmarks/gpu_paper.sh            # from the repository root
#
# What it runs, step by step (each command can be run by hand):
#   1. smoke test: every method once on digits class 3 on the GPU, through Ray (stops in seconds
#      on a device-only bug instead of failing every case)
#   2. python -m core train --dataset cifar10 --arch resnet50 --epochs $RESNET_EPOCHS --device cuda \
#          --data-dir $DATA --out assets/cifar10/resnet50.safetensors
#      python -m core train --dataset cifar10 --arch vgg16 --epochs $VGG_EPOCHS --device cuda \
#          --data-dir $DATA --out assets/cifar10/vgg16.safetensors
#      (vgg16 is the project's CIFAR VGG-16 with BatchNorm at full width; a checkpoint that exists is
#      kept: train never overwrites, so a rerun goes straight to step 3)
#   3. python -m core bench --profile full --datasets cifar10 --archs resnet50 vgg16 \
#          --classes 0 1 2 3 4 5 6 7 8 9 --seeds 3 --device cuda --data-dir $DATA \
#          --executor ray --out $OUT/cifar10-paper
#      Every case is a Ray task with 1 CPU and 1/(cases at once) of the GPU; each retrain key is
#      trained once (retrain cache, under a file lock) and a rerun of the same command skips the
#      finished cases, so a run stopped by the deadline is continued by running this script again.
#
# Cost: the retrain reference of each (class, seed) is a full training run with the model's recipe,
# 30 per model; ResNet-50 with RESNET_EPOCHS=60 is the bulk. Lower the epochs (the cards record
# them, and the retrain uses the same recipe) or the seeds to fit a shorter lease.
#
# Settings (environment):
#   BENCH_PY        python binary (python3)            BENCH_DATA_DIR  ../shared/data (cifar10 inside)
#   RESNET_EPOCHS   60                                 VGG_EPOCHS      60
#   BENCH_SEEDS     3                                  BENCH_CLASSES   "0 1 2 3 4 5 6 7 8 9"
#   BENCH_TIMEOUT   deadline of step 3 in seconds (0: none); the folder keeps every finished case
#   OUT             bench-results/paper                UNLEARN_CACHE_DIR  decoded data + retrain cache
#   RAY_ADDRESS     join this Ray cluster instead of starting a local one
set -u -o pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
PY=${BENCH_PY:-python3}
DATA=${BENCH_DATA_DIR:-../shared/data}
RESNET_EPOCHS=${RESNET_EPOCHS:-60}
VGG_EPOCHS=${VGG_EPOCHS:-60}
SEEDS=${BENCH_SEEDS:-3}
CLASSES=${BENCH_CLASSES:-0 1 2 3 4 5 6 7 8 9}
TIMEOUT=${BENCH_TIMEOUT:-0}
OUT=${OUT:-bench-results/paper}
export UNLEARN_BENCH_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
say() { printf '[%5ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" | tee -a "$OUT/log.txt"; }
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import sys, torch, ray; print('python', sys.version.split()[0], '| torch', torch.__version__, '| ray', ray.__version__, '| cuda', torch.cuda.is_available())"
    echo "cpus $(nproc --all); commit $(git log -1 --format=%H 2>/dev/null || echo unknown)"
} 2>&1 | tee "$OUT/env.txt"

say "1. smoke test: every method on digits class 3 on cuda, on Ray"
rm -rf "$OUT/smoke"
if ! "$PY" -m core bench --profile quick --datasets digits --classes 3 --seeds 1 --device cuda \
        --executor ray --out "$OUT/smoke" >"$OUT/smoke.log" 2>&1; then
    tr '\r' '\n' <"$OUT/smoke.log" | tail -n 40
    say "smoke test failed; nothing trained"
    exit 1
fi

for spec in "resnet50 $RESNET_EPOCHS" "vgg16 $VGG_EPOCHS"; do
    read -r arch epochs <<<"$spec"
    ck="assets/cifar10/$arch.safetensors"
    if [[ -f $ck ]]; then
        say "2. $ck exists; kept"
        continue
    fi
    say "2. training $arch for CIFAR-10, $epochs epochs"
    "$PY" -m core train --dataset cifar10 --arch "$arch" --epochs "$epochs" --device cuda --data-dir "$DATA" \
        --out "$ck" 2>&1 | tr '\r' '\n' | grep -v '^ *$' | tail -n 5 | tee -a "$OUT/log.txt" || exit 1
done

say "3. the full grid on resnet50 and vgg16 (classes $CLASSES; $SEEDS seeds; every method) on Ray"
# shellcheck disable=SC2086
cmd=("$PY" -m core bench --profile full --datasets cifar10 --archs resnet50 vgg16 --classes $CLASSES
     --seeds "$SEEDS" --device cuda --data-dir "$DATA" --executor ray --out "$OUT/cifar10-paper")
if (( TIMEOUT > 0 )); then cmd=(timeout -s INT -k 60 "$TIMEOUT" "${cmd[@]}"); fi
"${cmd[@]}" >"$OUT/bench.log" 2>&1
rc=$?
say "bench exit $rc ($(grep -c . "$OUT/cifar10-paper/runs.csv" 2>/dev/null || echo 0) lines in runs.csv); total $(( $(date +%s) - T0 )) s"
tar -czf "$OUT/cifar10-paper.tar.gz" -C "$OUT" cifar10-paper env.txt log.txt bench.log 2>/dev/null
exit $rc
