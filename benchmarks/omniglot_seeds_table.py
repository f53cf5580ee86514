"""The tables of benchmarks/omniglot_seeds.sh's runs.

    python -m benchmarks.omniglot_seeds_table /tmp/keras_ga_seeds

Prints one row per run, then one row per (ways, algo): the transductive
accuracy of uniform and agreement weighting on each seed, the
agreement-minus-uniform difference per seed, and its mean over seeds.
"""

import collections
import json
import pathlib
import sys


def load(out):
    runs = []
    for path in sorted(pathlib.Path(out).glob("*/results.json")):
        summary = json.loads(path.read_text())
        summary["by_protocol"] = {
            r["transductive"]: r for r in summary["results"]
        }
        runs.append(summary)
    return runs


def cell(result):
    if result is None:
        return "-"
    return f"{100 * result['mean']:.2f} +- {100 * result['ci95']:.2f}"


def runs_table(runs):
    lines = [
        "| ways | algo | weighting | seed | iterations x meta-batch | "
        "transductive % | non-transductive % | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        c, by = run["config"], run["by_protocol"]
        lines.append(
            f"| {c['ways']} | {c['algo']} | {c['weighting']} | {c['seed']} | "
            f"{c['iterations']} x {c['meta_batch_size']} | "
            f"{cell(by.get(True))} | {cell(by.get(False))} | "
            f"{run['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def differences_table(runs):
    acc = collections.defaultdict(dict)
    for run in runs:
        c = run["config"]
        acc[(c["ways"], c["algo"])][(c["seed"], c["weighting"])] = (
            100 * run["by_protocol"][True]["mean"]
        )
    lines = [
        "| ways | algo | seeds | uniform % | agreement % | "
        "agreement - uniform, per seed | mean difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for (ways, algo), values in sorted(acc.items()):
        seeds = sorted(
            s
            for s, w in values
            if w == "uniform" and (s, "agreement") in values
        )
        if not seeds:
            continue
        uniform = [values[(s, "uniform")] for s in seeds]
        agreement = [values[(s, "agreement")] for s in seeds]
        diffs = [a - u for a, u in zip(agreement, uniform)]
        lines.append(
            f"| {ways} | {algo} | {', '.join(map(str, seeds))} | "
            f"{' / '.join(f'{u:.2f}' for u in uniform)} | "
            f"{' / '.join(f'{a:.2f}' for a in agreement)} | "
            f"{' / '.join(f'{d:+.2f}' for d in diffs)} | "
            f"{sum(diffs) / len(diffs):+.2f} |"
        )
    return "\n".join(lines)


def main(out):
    runs = load(out)
    print(runs_table(runs))
    print()
    print(differences_table(runs))


if __name__ == "__main__":
    main(sys.argv[1])
