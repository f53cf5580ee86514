r"""Ships a finished run's model: `benchmarks/models/<name>.keras` + entry.

Saves the base network of the run's `checkpoint.keras` (no optimizer
state) and adds its entry to `benchmarks/models/MANIFEST.json`, or
replaces the entry of the same name, from the run's `config.json` and
`results.json` (see `benchmarks/models/README.md` for the fields). The run
folder is the `--output_dir` of an example, for instance:

    python -m examples.omniglot --preset=maml_5way_1shot --weighting=uniform \
        --iterations=4000 --meta_batch_size=8 --bn_momentum=0.9 \
        --output_dir=/tmp/omniglot_maml
    python -m benchmarks.ship_model --run_dir=/tmp/omniglot_maml \
        --name=omniglot_5way_1shot_maml_uniform_s0

Prints the entry. `--eval_protocol` chooses which of the run's meta-test
results the entry reports (`transductive`, `support_plus_query` or
`moving_stats`).
"""

import json

from absl import app
from absl import flags

from benchmarks import _models

flags.DEFINE_string("run_dir", None, "Folder of a finished example run.")
flags.DEFINE_string("name", None, "Entry name and file stem.")
flags.DEFINE_enum(
    "eval_protocol",
    "transductive",
    list(_models.EVAL_PROTOCOLS),
    "Which of the run's meta-test results the entry reports.",
)
flags.DEFINE_string(
    "models_dir", _models.MODELS_DIR, "Folder of the manifest and models."
)
flags.DEFINE_string(
    "hardware",
    None,
    "What trained the model; default the run's results.json.",
)
flags.mark_flags_as_required(["run_dir", "name"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    entry = _models.ship(
        FLAGS.run_dir,
        FLAGS.name,
        models_dir=FLAGS.models_dir,
        eval_protocol=FLAGS.eval_protocol,
        hardware=FLAGS.hardware,
    )
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    app.run(main)
