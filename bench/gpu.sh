#!/usr/bin/env bash
# GPU benchmark: ViT-B/16-class dual encoder in bf16 -> samples/s, peak memory, MFU (bench/gpu_bench.py), then
# the real training path (recipe -> mmzoo.train -> Trainer) under torchrun -> samples/s, MFU (bench/gpu_train.py).
#
#   bash bench/gpu.sh                       # all variants, batch 256 (a few minutes on an H100/H200)
#   bash bench/gpu.sh --variants mmzoo floor --batch 128
#
# Without a CUDA GPU it says so and exits 0. Python packages mmzoo needs but the machine lacks (e.g. pydantic on
# a bare CUDA image with no registry) are installed from wheels in $MMZOO_WHEELS (default .whl/, git-ignored);
# bench/README.md shows how to download them. Results also go to $OUT/gpu_bench.json when $OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${MMZOO_WHEELS:-.whl}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "bench/gpu.sh: no CUDA GPU visible to $PY (torch.cuda.is_available() is False); nothing to run"
    exit 0
fi

missing=$("$PY" - <<'EOF'
import importlib.util
print(" ".join(m for m in ("pydantic", "yaml", "jinja2", "safetensors", "transformers", "huggingface_hub")
               if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
    if [ -d "$WHEELS" ]; then
        echo "bench/gpu.sh: installing missing modules ($missing) from $WHEELS"
        "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$WHEELS"/*.whl
    else
        echo "bench/gpu.sh: $PY lacks $missing and $WHEELS does not exist; see bench/README.md (GPU)" >&2
        exit 1
    fi
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
json=()
train_json=()
if [ -n "${OUT:-}" ]; then json=(--json "$OUT/gpu_bench.json"); train_json=(--json "$OUT/gpu_train.json"); fi
"$PY" bench/gpu_bench.py "${json[@]}" "$@"
# The real training path (recipe -> Trainer, bf16, TF32, fused AdamW, workers, pinned memory) under torchrun;
# GPU_TRAIN_ARGS passes options to it (e.g. "--batch 64 --steps 60").
echo
echo "## Training path: torchrun --nproc_per_node 1 bench/gpu_train.py ${GPU_TRAIN_ARGS:-}"
# shellcheck disable=SC2086
"$PY" -m torch.distributed.run --standalone --nproc_per_node 1 bench/gpu_train.py "${train_json[@]}" ${GPU_TRAIN_ARGS:-}
