r"""Sine-wave regression: Reptile against gradient agreement (paper 4.1).

Meta-trains the MLP 1 -> 64 -> 64 -> 1 on sine tasks `a sin(x - phi)`
(`a ~ U[0.1, 5]`, `phi ~ U[0, 2 pi]`, `x ~ U[-5, 5]`) with Reptile, once
with uniform task weights (plain Reptile) and once with gradient agreement,
from the same initial weights, on the same training tasks and budget. A
training task has `--train_shots` (50) support points, which its
`--inner_steps` (5) SGD steps take in mini-batches of `--inner_batch_size`
(10); a test task adapts on its `--shots` (10) support points, every step
on all of them.
Both models are then meta-tested on the same `--eval_tasks` (1000) unseen
tasks after `--eval_inner_steps` (5, the paper's) and after
`--long_eval_inner_steps` (32) adaptation steps: the mean query MSE with
its 95% CI, and the paired difference agreement - uniform over the same
tasks. The paper reports 0.13 (Reptile) and 0.08 (gradient agreement).

    python -m examples.sine --output_dir=/tmp/sine

`--preset` names a configuration of `examples/configs/sine.py`; the other
flags override its fields. Writes to `--output_dir`: `results.json` (one
entry per evaluation in `evaluations`: model, test steps, protocol, mean,
CI, task count; `paired_differences` per step count; `agreement_weights`,
the weights' relation to the task amplitude over training), `results.md`,
`figure1.png` (the paper's Figure 1: before training, after Reptile, after
gradient agreement), `curves.png` (learning curves), `weights.png` (the
agreement weights of 200 fixed tasks against their amplitude, before and
after training, and the negative-weight fraction and the correlation of
the weights with ||g_i|| over training), and per run (`reptile_uniform/`,
`reptile_agreement/`) `history.csv`, `tensorboard/`, `checkpoint.keras`,
`backup/` and `weights.json` (see `examples.train`).

Long runs resume: each run backs up its training state every
`--checkpoint_every` meta-steps (default `--eval_every`) in
`<output_dir>/reptile_uniform/backup/` and
`<output_dir>/reptile_agreement/backup/`. After any stop, re-run the same
command to continue from the last backup; the results are those of an
uninterrupted run. Re-running a finished run (its `results.json` written)
prints its table without training again.

`--corrupt_fraction=0.2 --corruption=noise` corrupts 20% of the training
tasks, the same tasks in both runs (`keras_ga.sampler.corrupted_tasks`),
to see where gradient agreement helps and where it hurts: `noise` adds
Gaussian noise of standard deviation 1 to their targets, `shuffle`
permutes their targets among their points, `wrong_function` makes them
`a sin(x - phi) + 6` (systematic). Test tasks stay clean.
"""

from absl import app
from absl import flags
from absl import logging

from examples import _common
from examples import train
from examples.configs import sine as presets

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
