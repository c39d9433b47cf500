#!/usr/bin/env bash
# The known-answer studies of issue 27, from the repository root on a 2-core machine:
#   bash studies/known-answer/run.sh
# For each family (sources: Dyck-8 downstream, search over the pre-pre-training source; bands:
# NCA downstream of one band, search over the band): the ground-truth grid (every setting on 5
# seeds), then R repeats of the default search (its trial count, seeds and confirmation) with
# other sampler, training and confirmation seeds, for TPE and for random sampling. Every study
# goes to one journal per family under studies/results/known-answer/runs/, which
# python -m analysis.known_answer reads. Resumable: run it again to continue where it stopped.
# EXTRA adds flags to every study (EXTRA="--workers 1 --threads 1" beside another study).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${R:-10}
OUT=${OUT:-studies/results/known-answer/runs}
WORK=${WORK:-runs/known-answer}
CACHE=${CACHE:-$WORK/cache}
for family in sources bands; do
  journal=$OUT/$family/journal.log
  python -m search.run --study "studies/known-answer/$family-grid.toml" --storage "$journal" \
    --run-dir "$WORK/$family/grid" --cache-dir "$CACHE" --quiet ${EXTRA:-}
  for sampler in tpe random; do
    for r in $(seq 0 $((R - 1))); do
      python -m search.run --study "studies/known-answer/$family.toml" \
        --name "ka-$family-$sampler-r$r" --sampler "$sampler" --seed "$r" \
        --seeds "$((100 + 2 * r)),$((101 + 2 * r))" \
        --confirm-seeds "$((2000 + 3 * r)),$((2001 + 3 * r)),$((2002 + 3 * r))" \
        --storage "$journal" --run-dir "$WORK/$family/$sampler-r$r" --cache-dir "$CACHE" --quiet \
        ${EXTRA:-}
    done
  done
done
