#!/usr/bin/env bash
# Omniglot 5-way 1-shot, uniform against agreement weighting, several seeds,
# on a longer budget than benchmarks/paper_experiments.py.
#
#   KERAS_GA_DATA=../shared/data benchmarks/omniglot_seeds.sh /tmp/keras_ga_seeds
#
# Each run writes <out>/<algo>_<weighting>_s<seed>/results.json; the summary
# table comes from `python -m benchmarks.omniglot_seeds_table <out>`.
set -euo pipefail
out=${1:-/tmp/keras_ga_seeds}
mkdir -p "$out"
iterations=${ITERATIONS:-1000}
algos=${ALGOS:-maml reptile}
seeds=${SEEDS:-0 1}
for algo in $algos; do
  for seed in $seeds; do
    for weighting in uniform agreement; do
      dir="$out/${algo}_${weighting}_s${seed}"
      [[ -f "$dir/results.json" ]] && continue
      python -m examples.omniglot --ways=5 --shots=1 --algo="$algo" \
        --weighting="$weighting" --seed="$seed" --iterations="$iterations" \
        --meta_batch_size=8 --eval_every="$iterations" --val_tasks=0 \
        --eval_tasks=600 --bn_momentum=0.9 --output_dir="$dir" \
        > "$dir.log" 2>&1 || echo "failed: $dir"
    done
  done
done
