#!/usr/bin/env bash
# Omniglot 1-shot, uniform against agreement weighting, several seeds.
#
#   KERAS_GA_DATA=../shared/data benchmarks/omniglot_seeds.sh /tmp/keras_ga_seeds
#
# Environment: WAYS (5), ALGOS ("maml reptile"), SEEDS ("0 1"), ITERATIONS
# (1000), META_BATCH (8), EVAL_TASKS (600), EVAL_BATCH (20), BN_MOMENTUM
# (0.9), NON_TRANSDUCTIVE (true). Each run writes
# <out>/<ways>w_<algo>_<weighting>_s<seed>/results.json and is skipped when
# that file exists, so an interrupted sweep resumes. The summary table comes
# from `python -m benchmarks.omniglot_seeds_table <out>`.
set -euo pipefail
out=${1:-/tmp/keras_ga_seeds}
mkdir -p "$out"
ways=${WAYS:-5}
iterations=${ITERATIONS:-1000}
meta_batch=${META_BATCH:-8}
algos=${ALGOS:-maml reptile}
seeds=${SEEDS:-0 1}
for algo in $algos; do
  for seed in $seeds; do
    for weighting in uniform agreement; do
      dir="$out/${ways}w_${algo}_${weighting}_s${seed}"
      [[ -f "$dir/results.json" ]] && continue
      python -m examples.omniglot --ways="$ways" --shots=1 --algo="$algo" \
        --weighting="$weighting" --seed="$seed" --iterations="$iterations" \
        --meta_batch_size="$meta_batch" --eval_every="$iterations" \
        --val_tasks=0 --eval_tasks="${EVAL_TASKS:-600}" \
        --eval_batch_size="${EVAL_BATCH:-20}" \
        --non_transductive="${NON_TRANSDUCTIVE:-true}" --bn_momentum="${BN_MOMENTUM:-0.9}" \
        --output_dir="$dir" > "$dir.log" 2>&1 || echo "failed: $dir"
    done
  done
done
