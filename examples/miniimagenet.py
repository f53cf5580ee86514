r"""Few-shot miniImageNet with MAML, first-order MAML or Reptile.

Meta-trains conv4 (32 filters, flattened 5x5 features, as in MAML's
miniImageNet network) on the 64 training classes of the Ravi & Larochelle
split, logs validation accuracy on the 16 validation classes, and
meta-tests on `--eval_tasks` tasks of the 20 test classes, transductively
and non-transductively. Images are 84x84 RGB.

Defaults follow MAML (Finn et al. 2017): 15 query examples per class, five
inner steps of lr 0.01 in training and ten at test, meta-batch 4 (1-shot)
or 2 (5-shot), Adam 1e-3, 60k iterations; Reptile: eight inner steps in
training and fifty at test.

    python -m examples.miniimagenet --ways=5 --shots=1 --algo=maml \
        --iterations=1000 --output_dir=/tmp/mini_maml

Data (`keras_ga.datasets.load_miniimagenet`): `--data_dir`, else
`$KERAS_GA_DATA`, holding `miniimagenet/` with the pickle caches
`mini-imagenet-cache-{train,val,test}.pkl`, or the split CSVs and
`images/`. Writes the same files as `examples/omniglot.py`.
"""

from __future__ import annotations

import dataclasses
import functools

from absl import app
from absl import flags

from examples import _common
from examples import omniglot
from keras_ga.datasets import miniimagenet_episodes


@dataclasses.dataclass
class Config(omniglot.Config):
    """`omniglot.Config` with miniImageNet's defaults and image size."""

    queries: int = 15
    eval_queries: int = 15
    filters: int = 32
    eval_batch_size: int = 10
    image_size: int = 84

    def defaults(self) -> dict:
        reptile = self.algo == "reptile"
        return {
            "meta_batch_size": 4 if self.shots == 1 else 2,
            "inner_steps": 8 if reptile else 5,
            "eval_inner_steps": 50 if reptile else 10,
            "inner_learning_rate": 0.01,
        }


def train_and_evaluate(config: Config, output_dir: str) -> dict:
    """Meta-trains and meta-tests on miniImageNet; see the module docstring."""
    episodes = functools.partial(
        miniimagenet_episodes,
        data_dir=config.data_dir,
        image_size=config.image_size,
    )
    return omniglot.run_few_shot(
        config,
        output_dir,
        episodes=episodes,
        input_shape=(config.image_size, config.image_size, 3),
        dataset="miniimagenet",
        val_split="val",
        global_pool=False,
    )


def main(argv):
    del argv
    _common.configure_threads()
    config = omniglot.config_from_flags(Config)
    summary = train_and_evaluate(config, flags.FLAGS.output_dir)
    print(omniglot.TABLE_HEADER + omniglot.table_rows(summary))


if __name__ == "__main__":
    omniglot.define_flags(Config())
    app.run(main)
