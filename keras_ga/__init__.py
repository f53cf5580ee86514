"""keras_ga: gradient-based meta-learning for Keras 3 (TensorFlow backend).

MAML, first-order MAML and Reptile as a `keras.Model` (`MetaModel`), with
uniform or gradient-agreement task weighting (`AgreementWeighting`).
"""

from keras_ga import episode, layers
from keras_ga.agreement import AgreementWeighting, UniformWeighting
from keras_ga.batch_norm import exact_batch_norm
from keras_ga.episode import EPISODE_KEYS, as_episode
from keras_ga.meta_model import MetaModel

__version__ = "0.1.0"

__all__ = [
    "AgreementWeighting",
    "EPISODE_KEYS",
    "MetaModel",
    "UniformWeighting",
    "as_episode",
    "episode",
    "exact_batch_norm",
    "layers",
]
