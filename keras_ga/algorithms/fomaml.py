"""First-order MAML: the query gradient at theta_i, taken as theta's.

References:
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation
    of Deep Networks. ICML 2017 (section 5.2).
"""

from __future__ import annotations

from keras_ga.algorithms import base


class FOMAML(base.Algorithm):
    """First-order MAML: grad L_query evaluated at theta_i.

    The inner loop stops the gradient at every step, so no second
    derivative is taken. With the multi-step loss
    (`keras_ga.multi_step_loss`) the outer gradient is the weighted sum of
    the query gradients at each step's weights. Learned inner rates
    (`keras_ga.inner_rates`) get the first-order gradient: the query
    gradient at theta_i pulled back through the inner loop with its
    gradients held constant.

    Examples:
        >>> keras_ga.algorithms.FOMAML.name  # the `algo` of `MetaModel`
        'fomaml'
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> model = keras_ga.MetaModel(base, algo="fomaml")
    """

    name = "fomaml"
    learns_inner_rates = True
    takes_multi_step_loss = True

    def train(self, theta, learner) -> base.TaskResults:
        if learner.multi_step:
            # theta_t = theta - (constant steps): the derivative of the
            # multi-step loss is the weighted sum of the query gradients
            # at each theta_t.
            return base.through_adaptation(theta, learner, second_order=False)
        if learner.rates:
            # With the inner gradients held constant, d theta_i / d theta
            # is the identity and d theta_i / d rate is -g_t: the same
            # first-order gradients, through the recorded loop.
            return base.through_adaptation(theta, learner, second_order=False)
        phi, _ = learner.adapt(theta, second_order=False)
        query, grads = base.query_gradient(learner, phi)
        return base.task_results(theta, phi, grads, query)
