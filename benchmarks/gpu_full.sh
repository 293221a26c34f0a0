#!/usr/bin/env bash
# The bench's full profile (MNIST cnn + allcnn, classes 0-9, seeds 0-2; CIFAR-10 vgg11_slim,
# classes 0 3 5, seeds 0-2; every method incl. retrain) on one GPU machine within one command:
# many `python -m core bench` processes in parallel (1 CPU thread each), then `bench-merge`.
#
#   bash benchmarks/gpu_full.sh            # from the repository root
#
# Expects the data in $BENCH_DATA_DIR (default .devdata: MNIST/raw/*.gz, cifar10-jpeg.tar.gz) and,
# where zennit or plotly cannot be imported, their wheels in .whl/ (installed into $WORK/site).
# Jobs: two per (MNIST arch, seed) with 5 classes each (12), one per (CIFAR class, seed) (9): 21
# processes of one CPU thread each on 16 cores, so that no job holds more than 5 MNIST retrains
# (3 epochs each) or 1 CIFAR retrain (12 epochs); the seconds they report are measured while the
# others share the GPU and the cores, so compare them within this run only. Every job stops
# at the deadline ($BENCH_TIMEOUT seconds after this script started); a stopped job keeps the
# rows of the cases it finished (the bench rewrites its outputs after every case) and its part is
# marked partial in the merged summary.
#
# Results: $OUT/bench-full.tar.gz (merged folders, each part's runs.csv / meta.json / summary.md,
# logs, jobs.tsv), plus $OUT/mnist-summary.md, $OUT/cifar10-summary.md and $OUT/jobs.tsv.
#
# Settings (environment):
#   BENCH_PY            python binary (python3)           BENCH_DEVICE     cuda
#   BENCH_TIMEOUT       deadline of the jobs, seconds after start (480)
#   BENCH_DATA_DIR      .devdata                          BENCH_PROFILE    full
#   BENCH_MNIST_ARCHS   "cnn allcnn" (empty: no MNIST)    BENCH_MNIST_CLASSES "0 1 2 3 4 5 6 7 8 9"
#   BENCH_MNIST_GROUPS  jobs per (arch, seed), classes dealt out round-robin: 2 (1: all classes in one)
#   BENCH_CIFAR_ARCHS   vgg11_slim                        BENCH_CIFAR_CLASSES "0 3 5" (empty: no CIFAR)
#   BENCH_SEEDS         "0 1 2"                           BENCH_CIFAR_SEEDS  $BENCH_SEEDS
#   BENCH_METHODS       methods to run (empty: all)       BENCH_WORK       /tmp/bench-full
#   OUT                 folder for the results ($PWD/gpu-out)
#   UNLEARN_CACHE_DIR   decoded data + retrain cache ($BENCH_WORK/cache)
set -u -o pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)

PY=${BENCH_PY:-python3}
DEVICE=${BENCH_DEVICE:-cuda}
TIMEOUT=${BENCH_TIMEOUT:-480}
DATA=${BENCH_DATA_DIR:-.devdata}
PROFILE=${BENCH_PROFILE:-full}
MNIST_ARCHS=${BENCH_MNIST_ARCHS-cnn allcnn}
MNIST_CLASSES=${BENCH_MNIST_CLASSES:-0 1 2 3 4 5 6 7 8 9}
MNIST_GROUPS=${BENCH_MNIST_GROUPS:-2}
CIFAR_ARCHS=${BENCH_CIFAR_ARCHS:-vgg11_slim}
CIFAR_CLASSES=${BENCH_CIFAR_CLASSES-0 3 5}
SEEDS=${BENCH_SEEDS:-0 1 2}
CIFAR_SEEDS=${BENCH_CIFAR_SEEDS:-$SEEDS}
METHODS=${BENCH_METHODS:-}
WORK=${BENCH_WORK:-/tmp/bench-full}
OUT=${OUT:-$PWD/gpu-out}

export UNLEARN_CACHE_DIR=${UNLEARN_CACHE_DIR:-$WORK/cache}
export UNLEARN_BENCH_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1

rm -rf "$WORK/parts" "$WORK/logs" "$WORK/merged-mnist" "$WORK/merged-cifar10"
mkdir -p "$WORK/parts" "$WORK/logs" "$OUT" "$UNLEARN_CACHE_DIR"
say() { printf '[%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# ---------------------------------------------------------------- environment
if ! "$PY" -c "import zennit, plotly" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        say "installing .whl/*.whl into $WORK/site"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
            || for w in .whl/*.whl; do "$PY" -m zipfile -e "$w" "$WORK/site"; done
        export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import sys, torch, torchvision, zennit, plotly, pandas, sklearn; print('python', sys.version.split()[0], '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', '| plotly', plotly.__version__, '| pandas', pandas.__version__, '| sklearn', sklearn.__version__)"
    echo "cpus $(nproc --all); device $DEVICE; deadline ${TIMEOUT}s; data $DATA; cache $UNLEARN_CACHE_DIR; work $WORK"
    echo "commit $(git log -1 --format=%H 2>/dev/null || echo unknown)"
} 2>&1 | tee "$WORK/env.txt"

# ---------------------------------------------------------------- jobs
declare -a NAMES=() PIDS=() STARTS=()
remaining() { local r=$(( TIMEOUT - ($(date +%s) - T0) )); (( r < 10 )) && r=10; echo "$r"; }

launch() {   # launch NAME ARGS...: one bench process, stopped at the deadline
    local name=$1; shift
    local t; t=$(remaining)
    # shellcheck disable=SC2086
    timeout -k 15 "$t" "$PY" -m core bench --profile "$PROFILE" --device "$DEVICE" --data-dir "$DATA" \
        ${METHODS:+--methods $METHODS} --seeds 1 --out "$WORK/parts/$name" "$@" \
        >"$WORK/logs/$name.log" 2>&1 &
    NAMES+=("$name"); PIDS+=("$!"); STARTS+=("$(date +%s)")
    say "started $name (pid $!, timeout ${t}s): $*"
}

preload() {   # decode a dataset into the cache once, before its parallel jobs read it
    "$PY" -c "
import sys, time
from core.data import load_split
for name in sys.argv[2:]:
    for split in ('train', 'test'):
        t = time.perf_counter(); s = load_split(name, split, sys.argv[1])
        print(f'preloaded {name} {split}: {len(s)} images in {time.perf_counter() - t:.1f} s', flush=True)
" "$DATA" "$@"
}

# Smoke test: every method once on digits on the device, so that a device-only bug stops the run
# in seconds instead of failing every job (skip with BENCH_SMOKE=0).
if [[ ${BENCH_SMOKE:-1} != 0 ]]; then
    say "smoke test: every method on digits class 3 on $DEVICE"
    if ! "$PY" -m core bench --profile quick --datasets digits --classes 3 --seeds 1 --device "$DEVICE" \
            ${METHODS:+--methods $METHODS} --out "$WORK/smoke" >"$WORK/logs/smoke.log" 2>&1; then
        tr '\r' '\n' <"$WORK/logs/smoke.log" | grep -v '^bench' | tail -n 40
        say "smoke test failed; no jobs started"
        cp "$WORK/logs/smoke.log" "$OUT/smoke.log"
        exit 1
    fi
    say "smoke test passed"; grep -E '^\| (ours|retrain|lra_npp) ' "$WORK/smoke/summary.md" | head -n 3
fi

# CIFAR-10 decodes in the background (tens of seconds) while the MNIST jobs start.
CIFAR_PRE=
if [[ -n "$CIFAR_CLASSES" ]]; then
    preload cifar10 >"$WORK/logs/preload-cifar10.log" 2>&1 &
    CIFAR_PRE=$!
fi
if [[ -n "$MNIST_ARCHS" ]]; then
    preload mnist 2>&1 | tee "$WORK/logs/preload-mnist.log"
    read -r -a classes <<<"$MNIST_CLASSES"
    n=${#classes[@]}; g=$MNIST_GROUPS; (( g > n )) && g=$n
    for seed in $SEEDS; do
        for arch in $MNIST_ARCHS; do
            for (( i = 0; i < g; i++ )); do
                group=(); for (( j = i; j < n; j += g )); do group+=("${classes[j]}"); done
                suffix=; (( g > 1 )) && suffix="-g$i"
                launch "mnist-$arch-s$seed$suffix" --datasets mnist --archs "$arch" --first-seed "$seed" --classes "${group[@]}"
            done
        done
    done
fi
if [[ -n "$CIFAR_PRE" ]]; then
    wait "$CIFAR_PRE"; rc=$?
    cat "$WORK/logs/preload-cifar10.log"
    if (( rc != 0 )); then
        say "CIFAR-10 preload failed (rc $rc); no CIFAR jobs"
    else
        for seed in $CIFAR_SEEDS; do
            for c in $CIFAR_CLASSES; do
                launch "cifar10-c$c-s$seed" --datasets cifar10 --archs $CIFAR_ARCHS --first-seed "$seed" --classes "$c"
            done
        done
    fi
fi

printf 'job\trc\tseconds\trows\tstatus\n' >"$WORK/jobs.tsv"
for k in "${!PIDS[@]}"; do
    wait "${PIDS[k]}"; rc=$?
    name=${NAMES[k]}; secs=$(( $(date +%s) - STARTS[k] ))
    part="$WORK/parts/$name"
    rows=0; [[ -f "$part/runs.csv" ]] && rows=$(( $(wc -l <"$part/runs.csv") - 1 ))
    status=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('status','?'))" "$part/meta.json" 2>/dev/null || echo none)
    (( rc == 124 || rc == 137 )) && status="$status (timed out)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$rows" "$status" >>"$WORK/jobs.tsv"
    say "done $name rc=$rc ${secs}s rows=$rows $status"
    (( rc != 0 && rc != 124 && rc != 137 )) && tail -n 5 "$WORK/logs/$name.log" | tr '\r' '\n' | tail -n 5
done

# ---------------------------------------------------------------- merge and pack
declare -A MERGING=()
for ds in mnist cifar10; do
    parts=("$WORK"/parts/"$ds"-*)
    [[ -d "${parts[0]}" ]] || continue
    "$PY" -m core bench-merge "${parts[@]}" --out "$WORK/merged-$ds" >"$WORK/logs/merge-$ds.log" 2>&1 &
    MERGING[$ds]=$!
done
for ds in "${!MERGING[@]}"; do
    wait "${MERGING[$ds]}"; rc=$?
    say "merge $ds rc=$rc: $(tail -n 1 "$WORK/logs/merge-$ds.log")"
    [[ -f "$WORK/merged-$ds/summary.md" ]] && cp "$WORK/merged-$ds/summary.md" "$OUT/$ds-summary.md"
done
cp "$WORK/jobs.tsv" "$OUT/jobs.tsv"
(
    cd "$WORK" || exit 1
    items=(env.txt jobs.tsv logs)
    for d in merged-mnist merged-cifar10; do [[ -d $d ]] && items+=("$d"); done
    for p in parts/*; do
        for f in runs.csv meta.json summary.md; do [[ -f "$p/$f" ]] && items+=("$p/$f"); done
    done
    tar -czf "$OUT/bench-full.tar.gz" "${items[@]}"
)
say "wrote $OUT/bench-full.tar.gz ($(du -h "$OUT/bench-full.tar.gz" | cut -f1)); total $(( $(date +%s) - T0 )) s"
column -t -s $'\t' "$WORK/jobs.tsv" 2>/dev/null || cat "$WORK/jobs.tsv"
