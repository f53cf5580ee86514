"""`MetaModel`: MAML, first-order MAML and Reptile as a `keras.Model`.

A `MetaModel` wraps a built Keras model (the *base* model, whose weights are
the meta-parameters theta). Each `train_step` takes one meta-batch of N tasks
(see `keras_ga.episode`), adapts every task with `inner_steps` steps of the
inner optimizer (SGD, or Adam: `keras_ga.inner_optimizers`) on its support
set, and applies the outer update with the compiled optimizer:

- `algo="maml"`: sum_i w_i grad_theta L_query_i(theta_i(theta)), second
  order: the gradient flows through the inner loop.
- `algo="fomaml"`: sum_i w_i grad L_query_i evaluated at theta_i.
- `algo="reptile"`: the optimizer receives sum_i w_i (theta - theta_i) as
  the gradient, so SGD(lr=eps) steps to theta + eps sum_i w_i (theta_i -
  theta). The inner loop runs over the support set in sub-batches.

The weights w come from `weighting`: `"uniform"` (1/N, plain MAML /
Reptile) or `"agreement"` (gradient agreement, Eq. 13 of Eshratifar et al.,
on g_i = theta - theta_i).

`MetaModel` orchestrates: its arguments, `compile`, metrics, the Keras
steps, its config and the methods for new tasks. The work lives in the
module of its concept: the per-task rules in `keras_ga.algorithms`, the
inner loop in `keras_ga.inner_loop`, adaptation over a meta-batch or a new
task in `keras_ga._adaptation` (tasks run with `keras_ga.task_execution`),
the evaluation protocols in `keras_ga.protocols`. BatchNormalization,
mixed precision and which model is trained: see the README's "Pitfalls".

On Keras' JAX backend (`KERAS_BACKEND=jax`) the Keras steps are those of
`keras_ga.jax_trainer`, pure functions compiled with `jax.jit`; the same
rules and weightings run there (see the README's "TensorFlow or JAX").

References:
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation
    of Deep Networks. ICML 2017.
    Nichol, Achiam, Schulman. On First-Order Meta-Learning Algorithms.
    arXiv:1803.02999, 2018.
    Eshratifar, Eigen, Pedram. Gradient Agreement as an Optimization
    Objective for Meta-Learning. arXiv:1810.08178, 2018.
"""

from __future__ import annotations

import keras

from keras_ga import _adaptation
from keras_ga import _diagnostics
from keras_ga import _inputs
from keras_ga import _metrics
from keras_ga import agreement
from keras_ga import algorithms
from keras_ga import anil
from keras_ga import batch_norm
from keras_ga import distribute
from keras_ga import inner_optimizers
from keras_ga import inner_rates
from keras_ga import multi_step_loss as multi_step_loss_lib
from keras_ga import protocols
from keras_ga import task_execution as execution_lib
from keras_ga._optional import tensorflow as tf

# The algorithms built in (`keras_ga.algorithms.names()` also lists those
# registered later) and the task executions, as `algo` and
# `task_execution` take them.
ALGOS = algorithms.names()
TASK_EXECUTIONS = execution_lib.EXECUTIONS
# What `run_tasks` returns, per task and stacked over the tasks.
TaskResults = algorithms.TaskResults


def _on_jax() -> bool:
    """Whether Keras runs on its JAX backend (see `keras_ga.jax_trainer`)."""
    return keras.backend.backend() == "jax"


# The steps are written with TensorFlow control flow (tf.map_fn,
# tf.while_loop), so AutoGraph has nothing to convert; converting them
# anyway (tf.function or strategy.run around train_step) cost about 3 s of
# source transformation per trace of the conv MAML step. Keras fixes its
# backend when imported; on JAX there is no AutoGraph (and no TensorFlow).
if _on_jax():
    _no_autograph = lambda method: method  # noqa: E731
else:
    _no_autograph = tf.autograph.experimental.do_not_convert


@keras.saving.register_keras_serializable(package="keras_ga")
class MetaModel(keras.Model):
    """Meta-trains a Keras model with MAML, first-order MAML or Reptile.

    Args:
        model: a built Keras model; its weights are the meta-parameters.
            Its max-pooling layers are kept as they are: for second-order
            MAML on a CPU, `keras_ga.layers.MaxPooling2D` gives the stock
            layer's derivatives on faster kernels (`keras_ga.conv4` uses
            it).
        algo: `"maml"` (second order), `"fomaml"` (first order),
            `"reptile"`, or the name of a rule registered with
            `keras_ga.algorithms.register` (see `keras_ga.algorithms`).
        weighting: `"agreement"` (gradient agreement, Eq. 13), `"uniform"`
            (1/N), or a weighting object such as `AgreementWeighting()`.
        inner_steps: inner optimizer steps of adaptation per task during
            training.
        inner_learning_rate: the step size of the inner optimizer's steps
            (with `learn_inner_rates`, the learned rates' initial value).
        inner_optimizer: the inner-loop optimizer: `"sgd"` (default),
            `"adam"` or a `keras_ga.inner_optimizers.SGD` / `Adam` (its
            betas, epsilon and whether its moments reset for every task
            or carry over meta-steps, as in the Reptile reference; see
            `keras_ga.inner_optimizers`).
        eval_inner_steps: adaptation steps in `evaluate` and `adapt`;
            defaults to `inner_steps`.
        inner_batch_size: support examples per inner step. `None` means the
            algorithm's `default_inner_batch_size`: the whole support set
            for MAML / first-order MAML, and for Reptile
            `ceil(S / inner_steps)`, so that its `inner_steps` sub-batches
            cover the S support examples (Algorithm 1, line 5), except for
            a model with BatchNormalization, which takes the whole support
            set (batch statistics of a few examples break training). A
            sub-batch of 1 is refused for a model with BatchNormalization.
            Step t takes the t-th run of `inner_batch_size` examples of one
            random order of the support set (cycling), seeded by the
            optimizer's iteration and the task index.
        eval_inner_batch_size: support examples per inner step in
            `evaluate` and `adapt`; `None` applies `inner_batch_size`'s
            rule (with the training `inner_steps`).
        eval_protocol: how `evaluate` (and `keras_ga.evaluate_tasks`)
            predicts the query set of an adapted task, one of
            `keras_ga.protocols.PROTOCOLS`: `"transductive"` (default; the
            query set's batch statistics, the MAML / Reptile papers'
            protocol), `"support_plus_query"` (each query example in a
            batch of the support set plus that example: the Reptile
            reference's non-transductive protocol) or `"moving_stats"`
            (BatchNormalization's moving statistics). Training always uses
            batch statistics.
        transductive: deprecated alias of `eval_protocol` (`True` is
            `"transductive"`, `False` is `"moving_stats"`); warns, and may
            not be passed with `eval_protocol`.
        pre_adaptation_metrics: whether to also report loss and metrics of
            the query set before adaptation (`pre_` prefix), at the cost of
            one extra forward pass per task.
        weight_diagnostics: `None` (default), `"update_norm"` or a function
            `episode -> [N]` of one number per task (for sine tasks, their
            amplitude). When set, each training step also logs
            `weight_corr` (the correlation of the task weights with that
            quantity; `"update_norm"` is ||g_i||), `weight_std` and
            `weight_max`, next to `weight_min` and `weight_neg_frac`.
            A function must be registered with
            `keras.saving.register_keras_serializable` for the model to be
            saved.
        learn_inner_rates: `None` (default: the fixed step size
            `inner_learning_rate`), `"per_parameter"` (Meta-SGD: a learned
            rate for every weight, the same at every inner step) or
            `"per_layer_per_step"` (MAML++: a learned scalar per weight
            variable and inner step). The rates are the trainable
            variables `inner_rates`, trained by the outer optimizer with
            the base weights (second order for `"maml"`, first order for
            `"fomaml"`; Reptile is refused), saved with the model and used
            by every adaptation (`evaluate`, `adapt`, ...). Inner SGD
            only. See `keras_ga.inner_rates`.
        adapt_layers: `None` (default: every weight adapts) or a list of
            layer names whose weights alone adapt in the inner loop (ANIL:
            the head, such as `["logits"]`); the other weights are
            meta-learned by the outer step only. The inner optimizer's
            state and the learned rates cover the adapted weights.
            Refused with `algo="reptile"`. See `keras_ga.anil`.
        multi_step_loss: whether training takes MAML++'s multi-step loss,
            the query losses after every inner step weighted by
            `step_loss_weights` (a non-trainable variable, uniform until
            `keras_ga.callbacks.MultiStepLossAnnealing` anneals it towards
            the last step), instead of the query loss after the last step.
            For `"maml"` and `"fomaml"`. See `keras_ga.multi_step_loss`.
        exact_batch_norm: turn the stock `BatchNormalization` layers of
            `model` (Sequential, functional or subclassed) into
            `keras_ga.layers.BatchNormalization` (exact second
            derivatives), in place: see `keras_ga.exact_batch_norm`.
            `model` itself is trained either way.
        parallel_tasks: how many tasks `tf.map_fn` may run at once; `None`
            leaves TensorFlow's default. Lower it to cap memory. On JAX,
            with `"vectorized"` execution, `jax.vmap` batches groups of
            that many tasks, one group after the other (`None`: all).
        task_execution: how the tasks of a meta-batch run: `"map"` (one
            task at a time in a `tf.map_fn`, up to `parallel_tasks`
            concurrently), `"vectorized"` (all tasks at once with
            `tf.vectorized_map`; refused for models with convolutions,
            whose per-task filter gradients it cannot batch) or `"auto"`
            (default): `"vectorized"` when every layer of `model` batches
            over tasks (dense, activations, reshapes, BatchNormalization),
            the step is not XLA-compiled and no `tf.distribute` strategy is
            in use, else `"map"` (see `keras_ga.task_execution`; measured
            speeds are in benchmarks/RESULTS.md, "Speed"). On JAX:
            `"vectorized"` is `jax.vmap` (convolutions included), `"map"`
            runs the tasks one after the other, unrolled in the compiled
            step, and `"auto"` is `"map"` for models with convolutions
            (see `keras_ga.jax_trainer.resolve_execution`).
        **kwargs: passed to `keras.Model` (for example `name`).

    Example:

    ```python
    base = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40,
        activation="relu"), keras.layers.Dense(1)])
    model = keras_ga.MetaModel(base, algo="maml", weighting="agreement",
                               inner_steps=1, inner_learning_rate=0.01)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.fit(keras_ga.datasets.sine_tasks(...), steps_per_epoch=100)
    fast = model.adapt(support_x, support_y)
    fast.predict(query_x)
    ```

    Learned inner rates (Meta-SGD), initialised to `inner_learning_rate`:

    >>> model = keras_ga.MetaModel(
    ...     keras_ga.mlp((1,), 1, (8,)), inner_learning_rate=0.01,
    ...     learn_inner_rates="per_parameter")
    >>> [tuple(rate.shape) for rate in model.inner_rates]  # as the weights
    [(1, 8), (8,), (8, 1), (1,)]
    """

    def __init__(
        self,
        model: keras.Model,
        algo: str = "maml",
        weighting="agreement",
        inner_steps: int = 1,
        inner_learning_rate: float = 0.4,
        eval_inner_steps: int | None = None,
        inner_batch_size: int | None = None,
        transductive: bool | None = None,
        pre_adaptation_metrics: bool = True,
        exact_batch_norm: bool = True,
        parallel_tasks: int | None = None,
        task_execution: str = "auto",
        inner_optimizer="sgd",
        eval_inner_batch_size: int | None = None,
        eval_protocol: str | None = None,
        weight_diagnostics=None,
        learn_inner_rates: str | None = None,
        adapt_layers=None,
        multi_step_loss: bool = False,
        **kwargs,
    ):
        _inputs.check_backend()
        super().__init__(**kwargs)
        _inputs.check_arguments(
            model,
            algo,
            inner_steps,
            inner_learning_rate,
            eval_inner_steps,
            inner_batch_size,
            eval_inner_batch_size,
            weight_diagnostics,
            parallel_tasks,
            task_execution,
        )
        self.weighting = agreement.get(weighting)
        self.base = (
            batch_norm.exact_batch_norm(model) if exact_batch_norm else model
        )
        algorithms.base.check_inner_batch_size(
            inner_batch_size, batch_norm.has_batch_norm(self.base)
        )
        _inputs.check_per_step_batch_norm(
            self.base, inner_steps, eval_inner_steps or inner_steps
        )
        self.algo = algo
        self.inner_steps = inner_steps
        self.inner_learning_rate = float(inner_learning_rate)
        self.eval_inner_steps = eval_inner_steps or inner_steps
        self.inner_batch_size = inner_batch_size
        self.eval_inner_batch_size = eval_inner_batch_size
        self.eval_protocol = protocols.resolve(
            eval_protocol, transductive, "transductive", "eval_protocol"
        )
        self.adapt_layers = anil.check(self.base, adapt_layers, algo)
        # Which weights adapt; not tracked by Keras (a plain dataclass).
        self._partition = anil.partition(self.base, self.adapt_layers)
        adapted = anil.adapted_variables(self.base, self._partition)
        self.inner_optimizer = inner_optimizers.get(inner_optimizer)
        # Adam(moments="carry"): [count, *m, *v], non-trainable.
        self.inner_optimizer_state = self.inner_optimizer.state_variables(
            adapted
        )
        inner_rates.check(
            learn_inner_rates, algorithms.get(algo), self.inner_optimizer
        )
        self.learn_inner_rates = learn_inner_rates
        # Meta-parameters apart from the base model's weights.
        self.inner_rates = inner_rates.variables(
            learn_inner_rates,
            adapted,
            inner_steps,
            self.inner_learning_rate,
        )
        self.multi_step_loss = multi_step_loss_lib.check(
            multi_step_loss, algorithms.get(algo)
        )
        # MAML++'s importance of each training step's query loss.
        self.step_loss_weights = None
        if multi_step_loss:
            self.step_loss_weights = keras.Variable(
                multi_step_loss_lib.importance(0, inner_steps, 1),
                trainable=False,
                name="step_loss_weights",
            )
        self.weight_diagnostics = weight_diagnostics
        self.pre_adaptation_metrics = bool(pre_adaptation_metrics)
        self.exact_batch_norm = bool(exact_batch_norm)
        self.parallel_tasks = parallel_tasks
        self.task_execution = task_execution
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.pre_loss_tracker = keras.metrics.Mean(name="pre_loss")
        self.weight_min_tracker = keras.metrics.Mean(name="weight_min")
        self.weight_neg_tracker = keras.metrics.Mean(name="weight_neg_frac")
        self.diagnostic_trackers = _diagnostics.trackers()
        self.task_loss = None
        # Keras' compile-metrics containers (see `_metrics`), or None.
        self.query_metrics = None
        self.pre_metrics = None
        self._metric_args = None
        if _on_jax():
            from keras_ga import jax_trainer  # noqa: PLC0415

            jax_trainer.check(self)
        self.built = True

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configures the outer optimizer, the task loss and query metrics.

        Args:
            optimizer: the outer (meta) optimizer.
            loss: the per-task loss, applied to the support set in the inner
                loop and to the query set in the outer step.
            metrics: metrics of the query set after adaptation (and, with
                `pre_adaptation_metrics`, before it, prefixed `pre_`),
                resolved and named as `keras.Model.compile` does: `"acc"`
                is logged as `acc`, and `"accuracy"` is binary, categorical
                or sparse categorical accuracy according to the shapes of
                the targets and predictions.
            **kwargs: passed to `keras.Model.compile` (for example
                `jit_compile`, `steps_per_execution`). `jit_compile="auto"`
                (the default) follows Keras: no XLA on a machine without
                an accelerator. With one, XLA for models whose layers all
                batch over tasks (MLPs), outside `tf.distribute`, and no
                XLA for other models (XLA's second-order max-pooling
                gradient is approximate). `jit_compile=True` compiles any
                model (on a CPU an MLP's step is up to 1.8x faster, and
                TensorFlow logs its XLA lines; benchmarks/RESULTS.md,
                "Task execution and XLA"). On Keras' JAX backend the
                steps are compiled with `jax.jit` unless
                `jit_compile=False`.

        Raises:
            ValueError: for `loss=None`, for `loss_weights` or
                `weighted_metrics`, and for `metrics` that do not suit
                `loss` (accuracy with a regression loss).

        Example:

        >>> base = keras_ga.mlp((1,), 1, (40, 40))
        >>> model = keras_ga.MetaModel(base, algo="maml")
        >>> model.compile(
        ...     optimizer=keras.optimizers.Adam(1e-3),
        ...     loss="mse",
        ...     metrics=["mae"],
        ... )
        >>> model.metrics_names
        ['loss', 'mae', 'pre_loss', 'pre_mae']
        """
        kwargs = _inputs.check_compile(loss, kwargs)
        if _on_jax():
            # Keras' JAX trainer: the steps compiled with jax.jit ("auto").
            kwargs.setdefault("jit_compile", "auto")
        else:
            if kwargs.get("jit_compile", "auto") == "auto":
                kwargs["jit_compile"] = execution_lib.auto_jit_compile(
                    self.base
                )
            execution_lib.warn_if_slow_xla(self.base, kwargs["jit_compile"])
        self._metric_args = _metrics.check_metrics(metrics, loss)
        super().compile(
            optimizer=optimizer, metrics=self._metric_args or None, **kwargs
        )
        # Optimizer slots created inside the first traced step would make
        # tf.function trace the whole meta-step twice: create them now.
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        self.task_loss = keras.losses.get(loss)
        self.query_metrics, self.pre_metrics = _metrics.containers(
            self, self._metric_args
        )
        self._compile_args = {"loss": loss, "metrics": self._metric_args}

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is None:
            return None
        config = dict(config)
        for key in ("loss", "metrics"):
            config[key] = keras.saving.serialize_keras_object(
                self._compile_args[key]
            )
        return config

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.query_metrics]
        if self.pre_adaptation_metrics:
            trackers += [self.pre_loss_tracker, self.pre_metrics]
        trackers += [self.weight_min_tracker, self.weight_neg_tracker]
        if self.weight_diagnostics is not None:
            trackers += self.diagnostic_trackers
        return [m for m in trackers if m is not None]

    @property
    def metrics_names(self):
        """The names of `evaluate()`'s values, in their order.

        `fit` logs these and the weight diagnostics `weight_min` and
        `weight_neg_frac` (and, with `weight_diagnostics`, `weight_corr`,
        `weight_std` and `weight_max`).
        """
        names = [
            self.loss_tracker.name,
            *_metrics.names(self._metric_args or []),
        ]
        if self.pre_adaptation_metrics:
            names += ["pre_" + name for name in names]
        return names

    def call(self, inputs, training=False):
        """Predicts with the meta-parameters (no adaptation)."""
        return self.base(inputs, training=training)

    def get_config(self):
        return {
            "name": self.name,
            "model": keras.saving.serialize_keras_object(self.base),
            "algo": self.algo,
            "weighting": keras.saving.serialize_keras_object(self.weighting),
            "inner_steps": self.inner_steps,
            "inner_learning_rate": self.inner_learning_rate,
            "eval_inner_steps": self.eval_inner_steps,
            "inner_batch_size": self.inner_batch_size,
            "eval_protocol": self.eval_protocol,
            "pre_adaptation_metrics": self.pre_adaptation_metrics,
            "exact_batch_norm": self.exact_batch_norm,
            "parallel_tasks": self.parallel_tasks,
            "task_execution": self.task_execution,
            "inner_optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer
            ),
            "eval_inner_batch_size": self.eval_inner_batch_size,
            "weight_diagnostics": keras.saving.serialize_keras_object(
                self.weight_diagnostics
            ),
            "learn_inner_rates": self.learn_inner_rates,
            "adapt_layers": (
                None if self.adapt_layers is None else list(self.adapt_layers)
            ),
            "multi_step_loss": self.multi_step_loss,
        }

    @classmethod
    def from_config(cls, config):
        config = config.copy()
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        config["weighting"] = keras.saving.deserialize_keras_object(
            config["weighting"]
        )
        for key in ("inner_optimizer", "weight_diagnostics"):
            if key in config:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if "transductive" in config and "eval_protocol" not in config:
            # A config saved before `eval_protocol`.
            transductive = config.pop("transductive")
            config["eval_protocol"] = protocols.from_transductive(transductive)
        return cls(**config)

    @property
    def first_order(self) -> bool:
        """Whether `algo="maml"` trains first-order for now (as `"fomaml"`).

        `False` unless set: `keras_ga.callbacks.DerivativeOrderAnnealing`
        sets it for MAML++'s first-order first epochs. Changing it drops
        the traced train function, so that the next `fit` or
        `train_on_batch` traces the step anew (inside `fit`, call
        `make_train_function()` after changing it, as the callback does).
        Only `algo="maml"` takes it.
        """
        return getattr(self, "_first_order", False)

    @first_order.setter
    def first_order(self, value: bool):
        if value and self.algo != "maml":
            raise ValueError(
                "`first_order` (derivative-order annealing) applies to "
                f"algo='maml' only. Received: first_order={value!r} for "
                f"algo={self.algo!r}"
            )
        if bool(value) != self.first_order:
            self.train_function = None
        self._first_order = bool(value)

    @property
    def transductive(self) -> bool:
        """Deprecated: whether `eval_protocol` is `"transductive"`."""
        return self.eval_protocol == protocols.TRANSDUCTIVE

    @transductive.setter
    def transductive(self, value: bool):
        protocols.warn_transductive("eval_protocol")
        self.eval_protocol = protocols.from_transductive(bool(value))

    @property
    def resolved_task_execution(self) -> str:
        """`task_execution`, with `"auto"` resolved for the base model."""
        if _on_jax():
            from keras_ga import jax_trainer  # noqa: PLC0415

            return jax_trainer.resolve_execution(self.task_execution, self.base)
        return execution_lib.resolve(
            self.task_execution, self.base, self.jit_compile
        )

    @_no_autograph
    def run_tasks(
        self,
        data,
        training: bool,
        steps: int | None = None,
        transductive: bool | None = None,
        protocol: str | None = None,
    ) -> TaskResults:
        """Adapts every task of a meta-batch; see `TaskResults`.

        Args:
            data: a meta-batch (see `keras_ga.episode`).
            training: whether to compute the outer gradients of `algo`.
            steps: inner steps; defaults to `inner_steps` when training and
                `eval_inner_steps` otherwise.
            transductive: deprecated alias of `protocol`.
            protocol: overrides `eval_protocol` for this call (see
                `keras_ga.protocols`); ignored when training, whose query
                passes use batch statistics.
        """
        _adaptation.check_compiled(self)
        if not training:
            protocol = protocols.resolve(
                protocol, transductive, self.eval_protocol, "protocol"
            )
        return _adaptation.run_tasks(self, data, training, steps, protocol)

    # Keras steps.

    @_no_autograph
    def train_step(self, *args):
        if _on_jax():
            # Keras' JAX trainer: the pure `train_step(state, data)`.
            from keras_ga import jax_trainer  # noqa: PLC0415

            return jax_trainer.train_step(self, *args)
        (data,) = args
        results = self.run_tasks(data, training=True)
        # Under tf.distribute each replica holds its own tasks: the weights
        # are those of the global meta-batch, each replica applies the sum
        # over its tasks of w_i grad_i, and the optimizer sums those.
        weights = self.weighting(
            results.updates, all_reduce=distribute.replica_sum()
        )
        grads = agreement.weighted_sum(weights, results.outer_grads)
        # The learned inner rates take the same task weights.
        grads += agreement.weighted_sum(weights, results.rate_grads)
        # The grads are those of the unscaled losses, while `apply` divides
        # by the loss scale (`LossScaleOptimizer` under mixed precision, or
        # `loss_scale_factor`): scale them as the loss would have been.
        grads = [self.optimizer.scale_loss(g) for g in grads]
        self.optimizer.apply(
            grads, [*self.base.trainable_variables, *self.inner_rates]
        )
        _adaptation.store_state(self, results.states)
        _diagnostics.record(self, data, results, weights)
        return _metrics.record(self, data, results)

    @_no_autograph
    def test_step(self, *args):
        if _on_jax():
            from keras_ga import jax_trainer  # noqa: PLC0415

            return jax_trainer.test_step(self, *args)
        (data,) = args
        results = self.run_tasks(data, training=False)
        logs = _metrics.record(self, data, results)
        return _diagnostics.without_weight_logs(logs)

    @_no_autograph
    def predict_step(self, *args):
        if _on_jax():
            return super().predict_step(*args)
        (data,) = args
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _symbolic_build(self, iterator=None, data_batch=None):
        # Keras' JAX trainer builds by calling the model on the first
        # batch, an episode: build the metric containers from its query
        # set instead (the TensorFlow trainer goes through
        # `_maybe_symbolic_build` below).
        if _on_jax():
            from keras_ga import jax_trainer  # noqa: PLC0415

            if data_batch is None and iterator is not None:
                data_batch = jax_trainer.first_batch(iterator)
            if data_batch is not None:
                jax_trainer.build_metrics(self, data_batch)
        super()._symbolic_build(iterator=iterator, data_batch=data_batch)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Overrides a private hook of Keras' TensorFlow trainer (see
        # `_compat`): under tf.distribute, build from one replica's part
        # of the first batch (see `distribute.build_inputs`).
        strategy, iterator, data_batch = distribute.build_inputs(
            self, iterator, data_batch
        )
        if strategy is not None and data_batch is not None:
            with strategy.scope():
                _metrics.build(self, data_batch)
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # Keras entry points: arguments checked before Keras sees them (see
    # `_inputs`), and labels outside the model's outputs raised after each
    # step, also under XLA.

    def fit(self, *args, **kwargs):
        return super().fit(**_inputs.call_arguments("fit", self, args, kwargs))

    def evaluate(self, *args, **kwargs):
        kwargs = _inputs.call_arguments("evaluate", self, args, kwargs)
        return super().evaluate(**kwargs)

    def train_on_batch(self, *args, **kwargs):
        kwargs = _inputs.call_arguments("train_on_batch", self, args, kwargs)
        return super().train_on_batch(**kwargs)

    def test_on_batch(self, *args, **kwargs):
        kwargs = _inputs.call_arguments("test_on_batch", self, args, kwargs)
        return super().test_on_batch(**kwargs)

    def make_train_function(self, force=False):
        super().make_train_function(force=force)
        self.train_function = _inputs.raise_on_bad_labels(self.train_function)
        return self.train_function

    def make_test_function(self, force=False):
        super().make_test_function(force=force)
        self.test_function = _inputs.raise_on_bad_labels(self.test_function)
        return self.test_function

    def export(self, filepath, *args, **kwargs):
        """Exports the base model with the meta-parameters for serving.

        The served function predicts with the meta-parameters, as `predict`
        does; adapt to a task first (`adapt(...).export(...)`) to serve an
        adapted model. Arguments are those of `keras.Model.export`.
        """
        return self.base.export(filepath, *args, **kwargs)

    # New tasks.

    def adapt(self, x, y, steps: int | None = None, seed: int = 0):
        """Adapts the meta-parameters to one new task.

        Which BatchNorm statistics the adapted model predicts with:
        `fast(query_x, training=False)` and `fast.predict(query_x)` use the
        meta-model's moving statistics, copied into `fast` (each query
        example predicted alone: `transductive=False`);
        `fast(query_x, training=True)` uses the batch statistics of the
        inputs it is given, so calling it once on the whole query set is
        the transductive protocol (`transductive=True`, the MAML / Reptile
        reference), and calling it on the support set plus one query
        example, `fast(concat([x, q[None]]), training=True)[-1]`, predicts
        that example with support statistics only. Without BatchNorm the
        three agree.

        Each call builds a new Keras model, and its `predict` compiles a new
        function: to adapt and predict many tasks, `adapt_and_predict` is
        one compiled function, traced once per input shape.

        Args:
            x: support inputs of the task, [S, ...].
            y: support targets, [S, ...].
            steps: inner optimizer steps; defaults to `eval_inner_steps`.
            seed: seed of the sub-batch order (Reptile, `inner_batch_size`).

        Returns:
            A new Keras model, a copy of the base model holding the adapted
            weights theta_i and the meta-model's non-trainable state. To
            predict a query set under an evaluation protocol, call it with
            `training=True` (`"transductive"`) or `False`
            (`"moving_stats"`), or use `keras_ga.protocols.predict(fast,
            x, query_x, protocol)`, which also does
            `"support_plus_query"`.

        Example:

        >>> model = keras_ga.MetaModel(
        ...     keras_ga.mlp((1,), 1, (40, 40)), inner_learning_rate=0.01
        ... )
        >>> model.compile(optimizer="adam", loss="mse")
        >>> x = np.linspace(-5.0, 5.0, 10, dtype="float32")[:, None]
        >>> fast = model.adapt(x, np.sin(x), steps=5)
        >>> mse = lambda m: float(np.mean((m(x) - np.sin(x)) ** 2))
        >>> mse(fast) < mse(model)  # `model` predicts with theta
        True
        """
        x, y, steps = _adaptation.check_task(self, x, y, steps)
        return _adaptation.adapt(self, x, y, steps, seed)

    def adapt_and_predict(
        self,
        x,
        y,
        query_x,
        steps: int | None = None,
        seed: int = 0,
        protocol: str | None = None,
        transductive: bool | None = None,
    ):
        """Adapts to one new task and predicts its query inputs.

        The predictions of `keras_ga.protocols.predict(adapt(x, y, steps,
        seed), x, query_x, protocol)`, in one compiled function that is
        traced once per input shape and protocol and reused across tasks,
        without building a model per task.

        Args:
            x: support inputs of the task, [S, ...].
            y: support targets, [S, ...].
            query_x: the inputs to predict, [Q, ...].
            steps: inner optimizer steps; defaults to `eval_inner_steps`.
            seed: seed of the sub-batch order (Reptile, `inner_batch_size`).
            protocol: the evaluation protocol (`keras_ga.protocols`):
                `"transductive"` (BatchNorm statistics of `query_x`),
                `"support_plus_query"` (of the support set plus each query
                example) or `"moving_stats"`; defaults to `eval_protocol`.
            transductive: deprecated alias of `protocol`.

        Returns:
            The predictions for `query_x`, a tensor `[Q, ...]`.

        Example:

        ```python
        for task in test_tasks:
            pred = meta_model.adapt_and_predict(
                task["support_x"], task["support_y"], task["query_x"])
        ```
        """
        x, y, steps = _adaptation.check_task(self, x, y, steps)
        protocol = protocols.resolve(
            protocol, transductive, self.eval_protocol, "protocol"
        )
        return _adaptation.adapt_and_predict(
            self, x, y, query_x, steps, protocol, seed
        )
