"""What an example's configuration holds, and the choices of its fields.

A configuration is a frozen dataclass: `FewShotConfig` for the few-shot
classification examples (Omniglot, miniImageNet) and `SineConfig` for the
sine-regression experiment. The named configurations (presets) live one
module per example: `examples/configs/omniglot.py`,
`examples/configs/miniimagenet.py` and `examples/configs/sine.py`, each a
`PRESETS` dict of name to configuration and a `DEFAULT` name. Adding a
preset is adding one entry to that dict; the example's `--preset` flag
lists it from then on.

Each field carries its help text (the example's flag of the same name
shows it) and, where its values are enumerable, its `choices` (the flag is
then an enum flag, validated before anything runs).
"""

from __future__ import annotations

import dataclasses

from keras_ga.datasets.omniglot import PROTOCOLS as OMNIGLOT_PROTOCOLS
from keras_ga.datasets.sine import CORRUPTIONS as SINE_CORRUPTIONS
from keras_ga.datasets.sine import NOISE_STD
from keras_ga.datasets.sine import WRONG_FUNCTION_OFFSET
from keras_ga.inner_optimizers import MOMENTS
from keras_ga.models import DOWNSAMPLING
from keras_ga.sampler import CORRUPTIONS as FEW_SHOT_CORRUPTIONS

ALGOS = ("maml", "fomaml", "reptile")
WEIGHTINGS = ("uniform", "agreement")
DATASETS = ("omniglot", "miniimagenet")
INNER_OPTIMIZERS = ("sgd", "adam")
OUTER_OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "linear", "cosine")
INNER_RATES = ("none", "per_parameter", "per_layer_per_step")
PER_STEP_BATCH_NORM = ("none", "statistics", "statistics_and_weights")


def _field(default, help_text: str, choices: tuple[str, ...] | None = None):
    metadata = {"help": help_text}
    if choices is not None:
        metadata["choices"] = choices
    return dataclasses.field(default=default, metadata=metadata)


def _check_choices(config) -> None:
    for field in dataclasses.fields(config):
        choices = field.metadata.get("choices")
        value = getattr(config, field.name)
        if choices is not None and value not in choices:
            raise ValueError(
                f"`{field.name}` must be one of {choices}. "
                f"Received: {field.name}={value!r}."
            )


def _check(config) -> None:
    """The choices, the backup interval and the corrupted fraction."""
    _check_choices(config)
    every = config.checkpoint_every
    if every is not None and (every < 1 or config.eval_every % every):
        raise ValueError(
            "`checkpoint_every` must be a positive divisor of `eval_every` "
            f"({config.eval_every}): a run resumes at a backup, and validates "
            f"at backups. Received: checkpoint_every={every}."
        )
    for name in ("train_shots", "inner_batch_size", "eval_inner_batch_size"):
        value = getattr(config, name, None)
        if value is not None and value < 1:
            raise ValueError(
                f"`{name}` must be a positive int or unset (None). "
                f"Received: {name}={value}."
            )
    long_steps = getattr(config, "long_eval_inner_steps", 0)
    if long_steps < 0:
        raise ValueError(
            "`long_eval_inner_steps` must be a non-negative int (0: no "
            f"second meta-test). Received: long_eval_inner_steps={long_steps}."
        )
    if getattr(config, "within_alphabet", False) and (
        config.dataset != "omniglot"
    ):
        raise ValueError(
            "`within_alphabet` applies to Omniglot, whose classes have "
            f"alphabets. Received: within_alphabet=True with dataset="
            f"{config.dataset!r}."
        )
    if getattr(config, "protocol", "vinyals") != "vinyals" and (
        config.dataset != "omniglot"
    ):
        raise ValueError(
            "`protocol` chooses Omniglot's character split; "
            f"{config.dataset} has one split, leave it at 'vinyals'. "
            f"Received: protocol={config.protocol!r}."
        )
    if not 0 <= config.corrupt_fraction <= 1:
        raise ValueError(
            "`corrupt_fraction` must be in [0, 1]. "
            f"Received: corrupt_fraction={config.corrupt_fraction}."
        )


_CHECKPOINT_HELP = (
    "Meta-steps between backups of the training state (weights, optimizer, "
    "step) in <output_dir>/backup, where re-running the same command "
    "resumes the run; a divisor of eval_every. Unset: eval_every."
)
_CORRUPT_HELP = (
    "Probability that a training task is corrupted "
    "(keras_ga.sampler.corrupted_tasks names them); validation and test "
    "tasks stay clean."
)


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
    """Settings of one few-shot classification run (train, then meta-test).

    The defaults are the MAML paper's Omniglot 5-way 1-shot setting
    (`examples/configs/omniglot.py`, preset `maml_5way_1shot`).
    """

    dataset: str = _field(
        "omniglot",
        "Dataset: Omniglot (Vinyals split, 4 rotations, 28x28 grey) or "
        "miniImageNet (Ravi & Larochelle split, RGB).",
        DATASETS,
    )
    protocol: str = _field(
        "vinyals",
        "Omniglot's character split: vinyals (1200 training characters of "
        "both parts, 4 rotations each; the MAML and Reptile papers') or "
        "lake (the 964 background characters for training, the 659 "
        "evaluation characters for testing, no rotations; Lake et al.'s "
        "original one-shot protocol).",
        OMNIGLOT_PROTOCOLS,
    )
    within_alphabet: bool = _field(
        False,
        "Omniglot: draw each task's characters from one alphabet (Lake et "
        "al.'s one-shot tasks) instead of from the whole split.",
    )
    ways: int = _field(5, "Classes per task (N-way).")
    shots: int = _field(
        1, "Support examples per class (K-shot) of validation and test tasks."
    )
    train_shots: int | None = _field(
        None,
        "Support examples per class of training tasks (the Reptile "
        "reference's --train-shots). Unset: shots.",
    )
    queries: int = _field(1, "Query examples per class in training tasks.")
    eval_queries: int = _field(
        1, "Query examples per class in validation and test tasks."
    )
    algo: str = _field(
        "maml",
        "Meta-learning algorithm: MAML (second order), first-order MAML, "
        "or Reptile.",
        ALGOS,
    )
    weighting: str = _field(
        "agreement",
        "Task weighting of the outer update: the plain mean over tasks, or "
        "gradient agreement (weights from each task's inner product with "
        "the mean gradient).",
        WEIGHTINGS,
    )
    meta_batch_size: int = _field(32, "Training tasks per meta-step.")
    inner_steps: int = _field(1, "Inner steps per task in training.")
    eval_inner_steps: int = _field(
        3, "Inner steps per task at validation and test."
    )
    inner_batch_size: int | None = _field(
        None,
        "Support examples per inner step in training (mini-batches cycle "
        "through the shuffled support set). Unset: the whole support set.",
    )
    eval_inner_batch_size: int | None = _field(
        None,
        "Support examples per inner step at validation and test. Unset: "
        "the whole support set.",
    )
    inner_optimizer: str = _field(
        "sgd",
        "Inner-loop optimizer: sgd, or adam (beta_1 from inner_beta_1; the "
        "Reptile reference's).",
        INNER_OPTIMIZERS,
    )
    inner_learning_rate: float = _field(0.4, "Inner optimizer's step size.")
    inner_beta_1: float = _field(
        0.0, "First-moment decay of the inner Adam (the reference's 0)."
    )
    inner_moments: str = _field(
        "reset",
        "Inner Adam's moments: reset for every task, or carry (kept across "
        "meta-steps, as the Reptile reference keeps them; see "
        "keras_ga.inner_optimizers).",
        MOMENTS,
    )
    outer_optimizer: str = _field(
        "adam",
        "Outer (meta) optimizer: adam (the MAML paper's) or sgd (Reptile's "
        "meta-step: theta += lr * mean(theta_i - theta) with uniform "
        "weighting).",
        OUTER_OPTIMIZERS,
    )
    outer_learning_rate: float = _field(
        1e-3,
        "Learning rate of the outer optimizer (for Reptile with sgd, the "
        "meta-step size).",
    )
    outer_schedule: str = _field(
        "constant",
        "Outer learning rate over the run: constant, linear (annealed "
        "linearly to 0 at the last meta-step, the Reptile reference's "
        "--meta-step-final 0) or cosine (cosine annealing to "
        "outer_min_learning_rate at the last meta-step, MAML++'s).",
        SCHEDULES,
    )
    outer_min_learning_rate: float = _field(
        0.0, "Outer learning rate at the last meta-step of cosine annealing."
    )
    learn_inner_rates: str = _field(
        "none",
        "Learned inner learning rates: none, per_parameter (Meta-SGD) or "
        "per_layer_per_step (MAML++'s LSLR), initialised to "
        "inner_learning_rate.",
        INNER_RATES,
    )
    adapt_layers: str = _field(
        "",
        "Comma-separated names of the only layers that adapt in the inner "
        "loop (ANIL: logits); empty for every layer.",
    )
    multi_step_loss_epochs: int = _field(
        0,
        "MAML++'s multi-step loss, annealed to the last step over this "
        "many epochs (of eval_every meta-steps); 0 for the plain loss.",
    )
    first_order_epochs: int = _field(
        0,
        "MAML++'s derivative-order annealing: algo maml trains first-order "
        "for this many epochs (of eval_every meta-steps), then second "
        "order.",
    )
    iterations: int = _field(60000, "Meta-steps of training.")
    eval_every: int = _field(
        1000, "Meta-steps per Keras epoch; validation runs after each."
    )
    val_tasks: int = _field(
        100, "Validation tasks logged after each epoch; 0 for none."
    )
    eval_tasks: int = _field(600, "Meta-test tasks (mean and 95% CI).")
    eval_batch_size: int = _field(
        20,
        "At most this many tasks per meta-batch at validation and test "
        "(the largest divisor of the task count that fits).",
    )
    non_transductive: bool = _field(
        True,
        "Also meta-test non-transductively (BatchNorm moving statistics), "
        "besides transductively (query batch statistics).",
    )
    filters: int = _field(64, "Filters of each conv4 block.")
    downsample: str = _field(
        "max_pool",
        "How conv4's blocks halve the feature map: max_pool (stride-1 "
        "convolutions then 2x2 max-pooling, the MAML paper's network) or "
        "stride (stride-2 convolutions, no pooling, flattened features: "
        "the Reptile reference's Omniglot network).",
        DOWNSAMPLING,
    )
    bn_momentum: float = _field(0.99, "Momentum of conv4's BatchNorm.")
    per_step_batch_norm: str = _field(
        "none",
        "Per-step BatchNorm in conv4 (MAML++): none; statistics (each inner "
        "step its own moving statistics, BNRS); statistics_and_weights "
        "(also its own scale and offset, BNRS + BNWB). The rows cover "
        "max(inner_steps, eval_inner_steps) steps.",
        PER_STEP_BATCH_NORM,
    )
    image_size: int = _field(28, "Image height and width in pixels.")
    checkpoint_every: int | None = _field(None, _CHECKPOINT_HELP)
    corrupt_fraction: float = _field(0.0, _CORRUPT_HELP)
    corruption: str = _field(
        "shuffle",
        "What a corrupted training task's labels become: shuffle (support "
        "and query labels randomly permuted, noise) or permute (query "
        "labels shifted to the next class, systematic).",
        FEW_SHOT_CORRUPTIONS,
    )
    seed: int = _field(
        0, "Seed of the initial weights and of the training tasks."
    )
    eval_seed: int = _field(
        1000, "Seed of the test tasks (validation tasks: eval_seed + 1)."
    )
    data_dir: str | None = _field(
        None,
        "Data root holding the dataset's folder; default $KERAS_GA_DATA, "
        "else ~/.keras_ga/data.",
    )

    def __post_init__(self):
        _check(self)


@dataclasses.dataclass(frozen=True)
class SineConfig:
    """Settings of the sine experiment (its two runs share them).

    The defaults are preset `reptile_10shot` of `examples/configs/sine.py`
    (the gradient agreement paper's section 4.1).
    """

    algo: str = _field(
        "reptile",
        "Meta-learning algorithm of both runs (uniform and agreement "
        "weighting).",
        ALGOS,
    )
    shots: int = _field(10, "Support points of validation and test tasks.")
    train_shots: int | None = _field(
        50,
        "Support points of training tasks (the Reptile sine "
        "demonstration's). Unset: shots.",
    )
    queries: int = _field(10, "Query points per training task.")
    eval_queries: int = _field(
        100, "Query points per validation and test task."
    )
    hidden: int = _field(64, "Units of each of the MLP's two hidden layers.")
    activation: str = _field(
        "relu",
        "Activation of the MLP's hidden layers: relu (MAML's sine network) "
        "or tanh (the Reptile sine demonstration's, whose Figure 1 setting "
        "the gradient agreement paper repeats).",
        ("relu", "tanh"),
    )
    inner_steps: int = _field(5, "Inner SGD steps per task in training.")
    eval_inner_steps: int = _field(
        5, "Inner SGD steps per task at validation and test."
    )
    long_eval_inner_steps: int = _field(
        32,
        "Also meta-test every model with this many inner SGD steps (the "
        "paper's Reptile figure is reached only with more steps than 5); 0 "
        "for none.",
    )
    inner_learning_rate: float = _field(0.01, "Inner SGD step size.")
    inner_batch_size: int | None = _field(
        10,
        "Support points per inner step in training (mini-batches cycle "
        "through the shuffled support set). Unset: every support point. "
        "Validation and test steps take every support point.",
    )
    outer_learning_rate: float = _field(
        3e-3, "Adam learning rate of the outer (meta) update."
    )
    outer_schedule: str = _field(
        "linear",
        "Outer learning rate over the run: constant, or linear (annealed "
        "linearly to 0 at the last meta-step).",
        SCHEDULES,
    )
    meta_batch_size: int = _field(10, "Training tasks per meta-step.")
    iterations: int = _field(20000, "Meta-steps of training per run.")
    eval_every: int = _field(
        1000, "Meta-steps per Keras epoch; validation runs after each."
    )
    val_tasks: int = _field(
        100, "Validation tasks logged after each epoch; 0 for none."
    )
    eval_tasks: int = _field(1000, "Meta-test tasks (mean and 95% CI).")
    figure_task: int = _field(1, "Index of the test task drawn in figure1.png.")
    xla: bool = _field(
        False,
        "Compile the meta-step with XLA (jit_compile=True): on a CPU the "
        "MLP's step is up to 1.8x faster, TensorFlow logs its XLA lines, and "
        "Reptile's random sub-batches come from XLA's random stream (other "
        "orders than without XLA). False: jit_compile='auto' (no XLA on a "
        "CPU, as in Keras).",
    )
    checkpoint_every: int | None = _field(None, _CHECKPOINT_HELP)
    corrupt_fraction: float = _field(0.0, _CORRUPT_HELP)
    corruption: str = _field(
        "noise",
        "What a corrupted training task's targets become: noise (plus "
        f"Gaussian noise of std {NOISE_STD:g}), shuffle (targets permuted "
        "among the task's points) or wrong_function (sine + "
        f"{WRONG_FUNCTION_OFFSET:g}, systematic).",
        SINE_CORRUPTIONS,
    )
    seed: int = _field(
        0, "Seed of the initial weights and of the training tasks."
    )
    eval_seed: int = _field(
        1000, "Seed of the test tasks (validation tasks: eval_seed + 1)."
    )

    def __post_init__(self):
        _check(self)


def reptile_command(
    base: FewShotConfig,
    *,
    ways: int,
    shots: int,
    train_shots: int,
    inner_batch: int,
    inner_iters: int,
    learning_rate: float,
    meta_step: float,
    meta_batch: int,
    meta_iters: int,
    eval_batch: int,
    eval_iters: int,
) -> FewShotConfig:
    """A command of the Reptile reference as a configuration.

    The keyword arguments are the reference's flags (openai/supervised-
    reptile: `--classes`, `--shots`, `--train-shots`, `--inner-batch`, ...,
    always with `--meta-step-final 0`); `base` gives the dataset and the
    network. The reference's other choices are fixed: inner Adam with
    beta_1 = 0 whose moments carry over meta-steps, outer SGD with the
    meta-step annealed linearly to 0, one query example per class at test.
    """
    return dataclasses.replace(
        base,
        algo="reptile",
        ways=ways,
        shots=shots,
        train_shots=train_shots,
        eval_queries=1,
        meta_batch_size=meta_batch,
        inner_steps=inner_iters,
        eval_inner_steps=eval_iters,
        inner_batch_size=inner_batch,
        eval_inner_batch_size=eval_batch,
        inner_optimizer="adam",
        inner_learning_rate=learning_rate,
        inner_beta_1=0.0,
        inner_moments="carry",
        outer_optimizer="sgd",
        outer_learning_rate=meta_step,
        outer_schedule="linear",
        iterations=meta_iters,
    )
