r"""Re-evaluates the shipped models on freshly sampled test tasks.

For each entry of `benchmarks/models/MANIFEST.json` (or those of
`--names`), rebuilds the evaluated `MetaModel` around its `.keras` file
and meta-tests it with the entry's evaluation settings (protocol,
adaptation steps, query size, number of tasks) on test tasks of another
seed, then prints a Markdown table: the manifest's figure beside the new
one, their difference, and whether it is within their confidence
intervals. Data: `--data_dir`, else `$KERAS_GA_DATA`.

    KERAS_GA_DATA=../shared/data python -m benchmarks.reevaluate_models
    KERAS_GA_DATA=../shared/data python -m benchmarks.reevaluate_models \
        --names=omniglot_5way_1shot_maml_uniform_s0 --eval_seed=7
"""

from absl import app
from absl import flags

from benchmarks import _models

flags.DEFINE_list("names", None, "Entries to re-evaluate; default all.")
flags.DEFINE_integer(
    "eval_seed",
    None,
    "Seed of the test tasks; default each entry's eval_seed + 2 (neither "
    "its test nor its validation tasks). An entry's own eval_seed "
    "reproduces its figure.",
)
flags.DEFINE_integer(
    "num_tasks", None, "Test tasks per entry; default the entry's."
)
flags.DEFINE_string(
    "models_dir", _models.MODELS_DIR, "Folder of the manifest and models."
)
flags.DEFINE_string(
    "data_dir", None, "Data root; default $KERAS_GA_DATA, else ~/.keras_ga."
)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    entries = _models.load_manifest(FLAGS.models_dir)
    if FLAGS.names:
        known = {e["name"] for e in entries}
        unknown = sorted(set(FLAGS.names) - known)
        if unknown:
            raise app.UsageError(
                f"--names: no such entries {unknown}; the manifest has "
                f"{sorted(known)}."
            )
        entries = [e for e in entries if e["name"] in FLAGS.names]
    rows = []
    for entry in entries:
        seed = FLAGS.eval_seed
        if seed is None:
            seed = _models.default_eval_seed(entry)
        result = _models.reevaluate(
            entry,
            models_dir=FLAGS.models_dir,
            eval_seed=seed,
            num_tasks=FLAGS.num_tasks,
            data_dir=FLAGS.data_dir,
        )
        rows.append(_models.row(entry, result, seed))
    print(_models.table(rows))


if __name__ == "__main__":
    app.run(main)
