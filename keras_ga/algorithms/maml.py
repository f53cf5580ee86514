"""MAML: the query gradient through the inner loop (second order).

References:
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation
    of Deep Networks. ICML 2017.
"""

from __future__ import annotations

from keras_ga.algorithms import base


class MAML(base.Algorithm):
    """MAML: grad_theta L_query(theta_i(theta)), through the inner steps.

    The gradient of each task is taken inside its own tape, so backprop
    through the inner loop holds the activations of one task at a time.
    Learned inner rates (`keras_ga.inner_rates`) get theirs from the same
    tape. With the multi-step loss (`keras_ga.multi_step_loss`) the tape
    differentiates the weighted query losses after every step.

    Examples:
        >>> keras_ga.algorithms.MAML.name  # the `algo` of `MetaModel`
        'maml'
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> model = keras_ga.MetaModel(base, algo="maml")
    """

    name = "maml"
    learns_inner_rates = True
    takes_multi_step_loss = True

    def train(self, theta, learner) -> base.TaskResults:
        return base.through_adaptation(theta, learner, second_order=True)
