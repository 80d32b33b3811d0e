#!/usr/bin/env bash
# The gpu-quick preset on a lent GPU machine: the device kit's install, then
# `python -m benchmarks run --preset gpu-quick` (at most 8 minutes in all), results to $OUT.
#
# Here, in the checkout, once (copies what does not travel by itself into ignored folders;
# matplotlib is left out of the kit: nothing in this preset plots points):
#   bash benchmarks/gpu_quick.sh prepare
# Then one device call, from the repository root:
#   run(command="bash benchmarks/gpu_quick.sh", carry=[".device-kit", ".data"], timeout_s=600)
# and commit benchmarks/results/summary_gpu-quick.json and the per-family JSON from $OUT.
# Arguments after the script go to `benchmarks run`, e.g. the latent vs pixel diffusion family
# that the default 8 minutes leave out (about 5 minutes more, unmeasured):
#   run(command="bash benchmarks/gpu_quick.sh --only classifier,latent_diffusion", ...)
set -uo pipefail

if [ "${1:-}" = "prepare" ]; then
  shared=${SHARED:-../shared}
  [ -d "$shared/device" ] || shared=/work/shared
  rm -rf .device-kit .data
  cp -r "$shared/device" .device-kit && rm -rf .device-kit/wheels-plot
  mkdir -p .data/mnist .data/shakespeare
  cp "$shared"/data/mnist/*.parquet .data/mnist/
  cp "$shared"/data/shakespeare/plays.txt .data/shakespeare/
  du -sh .device-kit .data
  exit 0
fi

out=${OUT:-runs/benchmarks/gpu-quick-out}
mkdir -p "$out"
start=$(date +%s)
bash .device-kit/setup.sh > "$out/setup.log" 2>&1 || { tail -20 "$out/setup.log"; exit 1; }
grep -i missing "$out/setup.log"
echo "install: $(( $(date +%s) - start )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export GENLAB_DATA="$PWD/.data" WANDB_MODE=offline PYTHONUNBUFFERED=1
# The families' own timeouts cap the preset at about 8 minutes; this one keeps the call alive
# long enough to copy whatever was measured, even if a family overruns.
timeout $(( 570 - ($(date +%s) - start) )) python3 -m benchmarks run --preset gpu-quick "$@" \
  2>&1 | tee "$out/gpu_quick.log"
echo "total: $(( $(date +%s) - start )) s"
cp benchmarks/results/summary_gpu-quick.json benchmarks/results/RESULTS.md "$out/" 2>/dev/null
mkdir -p "$out/families"
cp runs/benchmarks/gpu-quick/*.json runs/benchmarks/gpu-quick/*.log "$out/families/" 2>/dev/null
ls -la "$out" "$out/families"
