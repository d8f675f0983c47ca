#!/usr/bin/env bash
# The GPU path's device checks in one command (issue 13; docs/guides/score.md#gpu).
#
# Where nothing can be downloaded (the lent H200 machine), the wheels travel in .whl/ beside the
# checkout. Two steps:
#
#   1. here, with PyPI:      bash benchmarks/gpu_device_check.sh prepare
#      (downloads the gpu extra and the packages that machine lacks into .whl/, about 59 MB, and
#      tells git to ignore .whl/)
#   2. on the GPU machine:   bash benchmarks/gpu_device_check.sh [tests] [agree] [bench] [--quick]
#      (device tool: run with carry [".whl"], timeout_s 600; the log lands in $OUT/gpu_device_check.log).
#      No stage named = all three: about 10 minutes with the first compile, more than one call
#      allows with a cold start; run "tests agree" in one call and "bench" in the next, or --quick.
#
# It prints the figures against the targets: end to end >= 1,000 images/s for uncompressed
# 2400x1600 phantoms and >= 500 images/s for JPEG 2000 lossless, >= 0.8 of the compiled model
# alone, and CPU-vs-GPU scores within 0.01 years with identical content hashes (lossless).
# --quick: fewer images (a first look that fits well inside one 10-minute call).
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
stages=""
for a in "$@"; do
    case "$a" in
        --quick) quick=1 ;;
        prepare|tests|agree|bench) stages="$stages $a" ;;
        all) stages=" tests agree bench" ;;
        *) echo "unknown argument $a (prepare, tests, agree, bench, all, --quick)"; exit 2 ;;
    esac
done
[ -z "$stages" ] && stages=" tests agree bench"
want() { case " $stages " in *" $1 "*) return 0 ;; esac; return 1; }
PY="${PYTHON:-python3}"

if want prepare; then
    exclude="$(git rev-parse --git-path info/exclude)"
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
    mkdir -p .whl
    # nvJPEG (baseline JPEG on the GPU) and pylibjpeg-libjpeg are left out: with them the carried
    # tree would pass the device tool's 64 MiB; the checks below use JPEG 2000 and raw data only.
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl \
        nvidia-nvimgcodec-cu13 nvidia-nvjpeg2k-cu13 duckdb pydicom pylibjpeg pylibjpeg-openjpeg pylibjpeg-rle
    du -sh .whl
    exit 0
fi

log="${OUT:-/tmp}/gpu_device_check.log"
exec > >(tee -a "$log") 2>&1
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the carried wheels failed"; exit 1; }
    export PYTHONPATH="$PWD:/tmp/site"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export EPI_SPINEAGE_PSEUDONYM_KEY="device-check-key-0123456789abcdef"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 - <<'PY'
import os, torch
print(f"# torch {torch.__version__}, CUDA {torch.cuda.is_available()}, {os.cpu_count()} CPU cores")
try:
    from nvidia import nvimgcodec
    print("# nvImageCodec", getattr(nvimgcodec, "__version__", "?"))
except ImportError as exc:
    print("# nvImageCodec missing:", exc)
PY
rc=0
# Uncompressed 2400x1600 files are 7.7 MB each: 2000 of them are 15 GB on that machine's 64 GB disk.
n_none=2000; n_j2k=2000; n_cpu_none=600; n_cpu_j2k=200; n_agree=48
[ "$quick" = 1 ] && { n_none=600; n_j2k=600; n_cpu_none=200; n_cpu_j2k=100; n_agree=16; }
common=(--device cuda --backbone efficientnet_b4 --size 1024x512 --batch-size 64 --scale 1.0)

if want tests; then
    echo "== gpu-marked tests"
    python3 -m pytest -q -m gpu -p no:cacheprovider tests/score/test_score_gpu_device.py -s -o addopts="" \
        || rc=1
fi
if want agree; then
    echo "== CPU vs GPU decode: hashes and scores"
    timeout 240 python3 benchmarks/gpu_agreement.py --compression jpeg2000 --n "$n_agree" --scale 1.0 || rc=1
fi
if want bench; then
    # The GPU path with the compiled network (the targets), then the CPU reader as the baseline
    # (eager: its figure is bounded by decoding, not by the network).
    for spec in "none gpu $n_none --compile" "jpeg2000 gpu $n_j2k --compile" "none cpu $n_cpu_none" \
                "jpeg2000 cpu $n_cpu_j2k"; do
        set -- $spec
        echo "== benchmark: --compression $1 --decode $2 ${4:-}, $3 images at 2400x1600" \
             "(targets on the GPU path: none >= 1000, jpeg2000 >= 500 images/s; >= 0.80 of the compiled model)"
        timeout 300 python3 benchmarks/score_throughput.py "${common[@]}" --compression "$1" --decode "$2" \
            --n "$3" ${4:-} || rc=1
    done
fi
echo "== done (exit $rc); log: $log"
exit $rc
