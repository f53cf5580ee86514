r"""Few-shot Omniglot with MAML, first-order MAML or Reptile.

Meta-trains the conv4 network (`keras_ga.models.conv4`, 64 filters, global
average pooling as in MAML's Omniglot network) on the 1200 training
characters of the Vinyals split (x4 rotations), then meta-tests on
`--eval_tasks` tasks of the 423 test characters, transductively (query
batch statistics, the papers' protocol) and non-transductively.

Defaults follow the MAML paper (Finn et al. 2017, 5-way: one inner step of
lr 0.4 in training, three at test, meta-batch 32, Adam 1e-3, 60k
iterations; 20-way: five steps of lr 0.1, meta-batch 16) and, for Reptile,
five inner steps over the whole support set and ten at test. They take
hours on a CPU; pass a smaller `--iterations` to try it:

    python -m examples.omniglot --ways=5 --shots=1 --algo=maml \
        --weighting=agreement --iterations=200 --meta_batch_size=8 \
        --output_dir=/tmp/omniglot_maml

Writes to `--output_dir`: `config.json`, `history.csv` (per-epoch training
and validation logs), `tensorboard/`, `checkpoint.keras` (the MetaModel),
`results.json` and `results.md` (the meta-test table). Data: `--data_dir`,
else `$KERAS_GA_DATA` (see `keras_ga.datasets.load_omniglot`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import keras
from absl import app
from absl import flags
from absl import logging

import keras_ga
from examples import _common
from keras_ga import evaluation
from keras_ga import models
from keras_ga.datasets import omniglot_episodes


@dataclasses.dataclass
class Config:
    """Settings of one few-shot run; `None` means the algorithm's default."""

    ways: int = 5
    shots: int = 1
    queries: int = 1
    eval_queries: int = 1
    algo: str = "maml"
    weighting: str = "agreement"
    meta_batch_size: int | None = None
    inner_steps: int | None = None
    eval_inner_steps: int | None = None
    inner_learning_rate: float | None = None
    outer_learning_rate: float = 1e-3
    iterations: int = 60000
    eval_every: int = 1000
    val_tasks: int = 100
    eval_tasks: int = 600
    eval_batch_size: int = 20
    non_transductive: bool = True
    filters: int = 64
    bn_momentum: float = 0.99
    seed: int = 0
    eval_seed: int = 1000
    data_dir: str | None = None

    def defaults(self) -> dict:
        """The papers' settings for the fields left `None`."""
        many = self.ways >= 20
        first_order_steps = (5 if many else 1, 5 if many else 3)
        steps = (5, 10) if self.algo == "reptile" else first_order_steps
        return {
            "meta_batch_size": 16 if many else 32,
            "inner_steps": steps[0],
            "eval_inner_steps": steps[1],
            "inner_learning_rate": 0.1 if many else 0.4,
        }

    def resolved(self) -> Config:
        """A copy with the `None` fields set to `defaults()`."""
        updates = {
            k: v for k, v in self.defaults().items() if getattr(self, k) is None
        }
        return dataclasses.replace(self, **updates)


def build_meta_model(config: Config, input_shape, global_pool=True):
    """The compiled MetaModel of `config` (resolved) on conv4."""
    keras.utils.set_random_seed(config.seed)
    base = models.conv4(
        input_shape,
        config.ways,
        config.filters,
        global_pool=global_pool,
        bn_momentum=config.bn_momentum,
    )
    model = keras_ga.MetaModel(
        base,
        algo=config.algo,
        weighting=config.weighting,
        inner_steps=config.inner_steps,
        inner_learning_rate=config.inner_learning_rate,
        eval_inner_steps=config.eval_inner_steps,
        # Reptile adapts on the whole support set at each step: with BatchNorm
        # a sub-batch of one example would normalise to zero.
        inner_batch_size=config.ways * config.shots,
        pre_adaptation_metrics=False,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.outer_learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def run_few_shot(
    config: Config,
    output_dir: str,
    *,
    episodes,
    input_shape,
    dataset: str,
    val_split: str,
    global_pool: bool = True,
) -> dict:
    """Meta-trains and meta-tests `config`; shared by the few-shot examples.

    Args:
        config: the run's settings (resolved here).
        output_dir: where logs, checkpoint and results go.
        episodes: `episodes(split, ways=, shots=, queries=,
            meta_batch_size=, seed=, num_tasks=)` -> episode dataset.
        input_shape: image shape of the base model.
        dataset: name written in the results.
        val_split: split of the validation tasks logged during training
            (used for learning curves only, not for model selection).
        global_pool: see `keras_ga.models.conv4`.

    Returns:
        The results dict also written to `results.json`.
    """
    config = config.resolved()
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)
    task = functools.partial(episodes, ways=config.ways, shots=config.shots)
    train = task(
        "train",
        queries=config.queries,
        meta_batch_size=config.meta_batch_size,
        seed=config.seed,
    )
    val = None
    if config.val_tasks:
        val = task(
            val_split,
            queries=config.eval_queries,
            meta_batch_size=_divisor(config.val_tasks, config.eval_batch_size),
            seed=config.eval_seed + 1,
            num_tasks=config.val_tasks,
        )
    model = build_meta_model(config, input_shape, global_pool)
    start = time.time()
    history = _common.fit(model, train, val, config, output_dir)
    train_time = time.time() - start
    test = task(
        "test",
        queries=config.eval_queries,
        meta_batch_size=_divisor(config.eval_tasks, config.eval_batch_size),
        seed=config.eval_seed,
        num_tasks=config.eval_tasks,
    )
    modes = (True, False) if config.non_transductive else (True,)
    start = time.time()
    results = [
        evaluation.evaluate_tasks(model, test, transductive=mode, verbose=0)
        for mode in modes
    ]
    for result in results:
        logging.info("%s %s", dataset, result)
    summary = {
        "dataset": dataset,
        "config": dataclasses.asdict(config),
        "train_seconds": round(train_time, 1),
        "eval_seconds": round(time.time() - start, 1),
        "history": history,
        "results": [r.as_dict() for r in results],
    }
    write_results(summary, output_dir)
    return summary


def _divisor(num_tasks, batch):
    """The largest meta-batch size <= `batch` dividing `num_tasks`."""
    return max(
        b for b in range(1, min(batch, num_tasks) + 1) if num_tasks % b == 0
    )


TABLE_HEADER = (
    "| dataset | ways | shots | algo | weighting | iterations | meta-batch "
    "| steps (train/test) | protocol | accuracy | 95% CI | tasks |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def table_rows(summary: dict) -> str:
    """Markdown table rows of one run's results."""
    c = summary["config"]
    rows = []
    for r in summary["results"]:
        mode = "transductive" if r["transductive"] else "non-transductive"
        rows.append(
            f"| {summary['dataset']} | {c['ways']} | {c['shots']} | "
            f"{c['algo']} | {c['weighting']} | {c['iterations']} | "
            f"{c['meta_batch_size']} | {c['inner_steps']}/{r['steps']} | "
            f"{mode} | {100 * r['mean']:.2f}% | {100 * r['ci95']:.2f}% | "
            f"{r['num_tasks']} |\n"
        )
    return "".join(rows)


def write_results(summary: dict, output_dir: str) -> None:
    """Writes `results.json` and `results.md` to `output_dir`."""
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(TABLE_HEADER + table_rows(summary))


def train_and_evaluate(config: Config, output_dir: str) -> dict:
    """Meta-trains and meta-tests on Omniglot; see the module docstring."""
    episodes = functools.partial(omniglot_episodes, data_dir=config.data_dir)
    return run_few_shot(
        config,
        output_dir,
        episodes=episodes,
        input_shape=(28, 28, 1),
        dataset="omniglot",
        val_split="test",
    )


def define_flags(defaults: Config) -> None:
    """absl flags mirroring the fields of `defaults` (a `Config`)."""
    _common.define_thread_flag()
    for field in dataclasses.fields(defaults):
        value = getattr(defaults, field.name)
        kind = field.type if isinstance(field.type, str) else ""
        if "bool" in kind:
            flags.DEFINE_bool(field.name, value, field.name)
        elif "float" in kind:
            flags.DEFINE_float(field.name, value, field.name)
        elif "int" in kind:
            flags.DEFINE_integer(field.name, value, field.name)
        else:
            flags.DEFINE_string(field.name, value, field.name)
    flags.DEFINE_string("output_dir", None, "Where results are written.")
    flags.mark_flag_as_required("output_dir")


def config_from_flags(cls=Config) -> Config:
    """The config of class `cls` from the parsed flags."""
    fields = dataclasses.fields(cls)
    values = {f.name: flags.FLAGS[f.name].value for f in fields}
    return cls(**values)


def main(argv):
    del argv
    _common.configure_threads()
    summary = train_and_evaluate(config_from_flags(), flags.FLAGS.output_dir)
    print(TABLE_HEADER + table_rows(summary))


if __name__ == "__main__":
    define_flags(Config())
    app.run(main)
