r"""Few-shot miniImageNet with MAML, first-order MAML or Reptile.

Meta-trains conv4 (32 filters, flattened 5x5 features, as in MAML's
miniImageNet network) on the 64 training classes of the Ravi & Larochelle
split, logs validation accuracy on the 16 validation classes, and
meta-tests on `--eval_tasks` tasks of the 20 test classes, transductively
and non-transductively. Images are 84x84 RGB.

`--preset` names a configuration of `examples/configs/miniimagenet.py`
(the MAML paper's settings: `maml_5way_1shot`, `maml_5way_5shot`, and
likewise for `fomaml` and `reptile`); the other flags override its fields:

    python -m examples.miniimagenet --preset=maml_5way_1shot \
        --iterations=1000 --output_dir=/tmp/mini_maml

Data (`keras_ga.datasets.load_miniimagenet`): `--data_dir`, else
`$KERAS_GA_DATA`, holding `miniimagenet/` with the pickle caches
`mini-imagenet-cache-{train,val,test}.pkl`, or the split CSVs and
`images/`. Writes the same files as `examples/omniglot.py`, resumes the
same way (re-run the same command; the backup is in
`<output_dir>/backup/`) and takes the same corruption flags.
"""

from absl import app
from absl import flags
from absl import logging

from examples import _common
from examples import train
from examples.configs import miniimagenet as presets

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    _common.configure_threads()
    config = _common.config_from_flags(presets)
    logging.info("%s", config)
    summary = train.train_and_evaluate(config, FLAGS.output_dir)
    print(train.table(summary))


if __name__ == "__main__":
    _common.define_flags(presets)
    flags.adopt_module_key_flags(_common)
    app.run(main)
