#!/usr/bin/env bash
# The checks no CPU can make, as one short run on an NVIDIA GPU host (H100/H200) whose image has JAX with CUDA,
# flax, optax, orbax, tensorstore, transformers and torch. Writes every report under OUT (default ./gpu_out):
#   attention.json   cuDNN and chunked attention vs XLA in bf16 at the models' real shapes (experiments.attention_check)
#   throughput.json  CTD train step at real size: step time, clips/s, MFU (experiments.train_throughput)
#   compare.json     JAX vs transformers PyTorch, real InternVL3-8B shapes, bf16 (experiments.compare_torch)
#   latency/         experiments.latency at size=real (JSON + PNG)
# Each check has its own time limit so one hang does not cost the others. Packages the image lacks (grain,
# ml_collections, av, ...) are installed first from ./.whl when present (wheels for Python 3.12 x86-64).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
log() { echo "== $(date +%T) $*"; }
log "versions"
python3 -c 'import jax, flax, optax, orbax.checkpoint as o, torch, transformers; print("jax", jax.__version__, jax.devices(), "flax", flax.__version__, "optax", optax.__version__, "torch", torch.__version__, "transformers", transformers.__version__)'
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader

log "attention_check"
timeout "${T_ATTN:-90}" python3 -m experiments.attention_check --impls cudnn,chunked --dtype bfloat16 \
  --out "$OUT/attention.json"; echo "rc=$?"

log "train_throughput (CTD, real size, teacher online)"
timeout "${T_MFU:-150}" python3 -m experiments.train_throughput --config configs/ctd.py:variant=8b \
  --batch_sizes "${MFU_BATCHES:-8,32}" --attention "${MFU_ATTN:-cudnn}" --steps 5 --warmup 2 \
  --out "$OUT/throughput.json"; echo "rc=$?"

log "compare_torch (real, bf16)"
timeout "${T_CMP:-120}" python3 -m experiments.compare_torch --size real --dtype bfloat16 \
  --attention "${CMP_ATTN:-cudnn}" --repeats 5 --warmup 2 --out "$OUT/compare.json"; echo "rc=$?"

log "latency (real)"
timeout "${T_LAT:-200}" python3 -m experiments.latency \
  --config "configs/latency.py:size=real,attention=${LAT_ATTN:-cudnn},frames=${LAT_FRAMES:-8+64+512}" \
  --config.repeats=5 --config.warmup=2 --out "$OUT/latency"; echo "rc=$?"
log "done"
