"""The table of benchmarks/omniglot_seeds.sh's runs.

python -m benchmarks.omniglot_seeds_table /tmp/keras_ga_seeds
"""

import json
import pathlib
import sys


def main(out):
    rows = []
    for path in sorted(pathlib.Path(out).glob("*/results.json")):
        summary = json.loads(path.read_text())
        c = summary["config"]
        cells = {
            r["transductive"]: f"{100 * r['mean']:.2f} +- {100 * r['ci95']:.2f}"
            for r in summary["results"]
        }
        rows.append(
            f"| {c['ways']} | {c['algo']} | {c['weighting']} | {c['seed']} | "
            f"{c['iterations']} x {c['meta_batch_size']} | "
            f"{cells.get(True, '-')} | {cells.get(False, '-')} | "
            f"{summary['train_seconds']:.0f} |"
        )
    print(
        "| ways | algo | weighting | seed | iterations x meta-batch | "
        "transductive % | non-transductive % | train s |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1])
