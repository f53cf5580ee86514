"""First-order MAML: the query gradient at theta_i, taken as theta's.

References:
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation
    of Deep Networks. ICML 2017 (section 5.2).
"""

from __future__ import annotations

import tensorflow as tf

from keras_ga.algorithms import base


class FOMAML(base.Algorithm):
    """First-order MAML: grad L_query evaluated at theta_i.

    The inner loop stops the gradient at every step, so no second
    derivative is taken.

    Examples:
        >>> keras_ga.algorithms.FOMAML.name  # the `algo` of `MetaModel`
        'fomaml'
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> model = keras_ga.MetaModel(base, algo="fomaml")
    """

    name = "fomaml"

    def train(self, theta, learner) -> base.TaskResults:
        phi, _ = learner.adapt(theta, second_order=False)
        with tf.GradientTape() as tape:
            tape.watch(phi)
            query = learner.query(phi)
        grads = tape.gradient(query.loss, phi)
        return base.task_results(theta, phi, grads, query)
