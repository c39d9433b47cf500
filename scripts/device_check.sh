#!/bin/bash
# The device checks, as one script, for a session that is lent a GPU (15 device-minutes, one
# machine whose image has torch but not optuna or submitit): the NCA engine's and the trainer's
# throughput on the device (nca.bench, lm.bench: tokens/s and MFU of the preset), then one trial
# of the paper setting end to end (search.bench_trial: scratch runs, NCA data, pre-pre-training,
# transfer, downstream), with its downstream budget cut to fit the slot. The limits add up to
# 570 s, under the device's 600 s per command.
#
#   bash scripts/device_check.sh                         # on the device: gpu-proxy, cuda
#   DEVICE=cpu PRESET=tiny TOKENS=16384 bash scripts/device_check.sh   # what the test runs
#
# Each figure goes to $OUT (env.txt, nca_bench.json, lm_bench.json, bench_trial.json); a step
# that fails or runs past its limit is reported and the next one still runs. Exit 1 if any failed.
#
# With DEVICE=cuda and 2 or more GPUs, one more step (ddp_bench.json, limit 150 s) trains the
# preset data-parallel on all of them under NCCL and on one alone, the same global batch
# (python -m lm.bench_ranks: tokens/s of each, their ratio, and both runs' last train loss, which
# should agree to bf16 rounding). It has not run yet: no session had several GPUs. The five steps
# exceed one 600 s command, so on such a machine run it alone first:
#   ONLY=ddp_bench.json bash scripts/device_check.sh
# (ONLY=<name> runs that one step; without it every step runs, the multi-GPU one last.)
set -u
OUT=${OUT:-device-out}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-gpu-proxy}
TOKENS=${TOKENS:-10000000}   # gpu-proxy: 38 steps of 262,144 tokens; the NCA stage 2% of it
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
failed=0
step() {  # name, limit in seconds, then the command; its stdout goes to $OUT/<name>
  local name=$1 limit=$2; shift 2
  [ -z "${ONLY:-}" ] || [ "$ONLY" = "$name" ] || return 0
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name"
  local rc=$?
  echo "[device_check] $name: exit $rc after $((SECONDS - start)) s (limit $limit s)" >&2
  [ "$rc" -eq 0 ] || failed=1
}
step env.txt 30 python -c "import sys, numpy, torch
print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'torch', torch.__version__)
print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
step nca_bench.json 90 python -m nca.bench --device "$DEVICE" --runs 3 --json
step lm_bench.json 150 python -m lm.bench --device "$DEVICE" --presets "$PRESET" --nca --json
step bench_trial.json 300 python -m search.bench_trial --preset "$PRESET" --domain-tokens "$TOKENS" --json
gpus=$(python -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$DEVICE" = cuda ] && [ "${gpus:-0}" -ge 2 ]; then
  step ddp_bench.json 150 python -m lm.bench_ranks --device cuda --preset "$PRESET" \
    --ranks "$gpus" --steps 6 --json
else
  echo "[device_check] ddp_bench.json: not run (needs DEVICE=cuda and 2+ GPUs; ${gpus:-0} here)" >&2
fi
cat "$OUT"/env.txt "$OUT"/*.json 2>/dev/null
exit $failed
