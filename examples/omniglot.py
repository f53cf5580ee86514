r"""Few-shot Omniglot with MAML, first-order MAML or Reptile.

Meta-trains the conv4 network (`keras_ga.models.conv4`, 64 filters; global
average pooling as in MAML's Omniglot network, or stride-2 convolutions
with flattened features for the Reptile presets) on the 1200 training
characters of the Vinyals split (x4 rotations), then meta-tests on
`--eval_tasks` tasks of the 423 test characters, transductively (query
batch statistics, the papers' protocol) and non-transductively.

`--preset` names a configuration of `examples/configs/omniglot.py` (the
MAML paper's settings, for example `maml_5way_1shot`, and the Reptile
reference's commands, for example `reptile_5way_1shot`); the other flags
override its fields. `--protocol=lake` uses Lake et al.'s background /
evaluation split and `--within_alphabet` draws each task from one
alphabet. The full budget takes hours on a CPU; pass a smaller
`--iterations` to try it:

    python -m examples.omniglot --preset=maml_5way_1shot \
        --weighting=agreement --iterations=200 --meta_batch_size=8 \
        --output_dir=/tmp/omniglot_maml

Writes to `--output_dir`: `config.json`, `history.csv` (per-epoch training
and validation logs), `tensorboard/`, `checkpoint.keras` (the MetaModel),
`backup/`, `results.json` and `results.md` (the meta-test table; see
`examples.train`). Data: `--data_dir`, else `$KERAS_GA_DATA` (see
`keras_ga.datasets.load_omniglot`).

Long runs resume: the training state (weights, optimizer, meta-step) is
backed up every `--checkpoint_every` meta-steps (default `--eval_every`)
in `<output_dir>/backup/`. After any stop (Ctrl-C, SIGKILL, a reboot),
re-run the same command to continue from the last backup; the run ends on
the same weights and results as an uninterrupted one, so a 60000-step run
can take many hours in pieces. Re-running a finished run (its
`results.json` written) prints its table without training again; another
configuration in the same `--output_dir` is refused.

`--corrupt_fraction=0.1 --corruption=shuffle` corrupts 10% of the training
tasks (`keras_ga.sampler.corrupted_tasks` names them; the same tasks for
every run with the same `--seed`): `shuffle` permutes their support and
query labels at random (noise), `permute` maps their query labels to the
next class (systematic). Validation and test tasks stay clean.
"""

from absl import app
from absl import flags
from absl import logging

from examples import _common
from examples import train
from examples.configs import omniglot as presets

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
