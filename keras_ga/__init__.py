"""keras_ga: gradient-based meta-learning for Keras 3 (TensorFlow or JAX).

MAML, first-order MAML and Reptile as a `keras.Model` (`MetaModel`), with
uniform or gradient-agreement task weighting (`AgreementWeighting`).
"""

from keras_ga import algorithms
from keras_ga import anil
from keras_ga import callbacks
from keras_ga import class_major
from keras_ga import datasets
from keras_ga import episode
from keras_ga import evaluation
from keras_ga import inner_optimizers
from keras_ga import inner_rates
from keras_ga import layers
from keras_ga import models
from keras_ga import multi_step_loss
from keras_ga import numpy_episodes
from keras_ga import protocols
from keras_ga import sampler
from keras_ga import stateless_random
from keras_ga._version import __version__ as __version__
from keras_ga.agreement import AgreementWeighting
from keras_ga.agreement import UniformWeighting
from keras_ga.batch_norm import exact_batch_norm
from keras_ga.callbacks import EpisodeStreamStart
from keras_ga.episode import EPISODE_KEYS
from keras_ga.episode import as_episode
from keras_ga.evaluation import EvaluationResult
from keras_ga.evaluation import confidence_interval
from keras_ga.evaluation import evaluate_tasks
from keras_ga.evaluation import paired_difference
from keras_ga.meta_model import MetaModel
from keras_ga.models import conv4
from keras_ga.models import mlp
from keras_ga.sampler import ClassMajor
from keras_ga.sampler import few_shot_episodes
from keras_ga.sampler import group_by_class
from keras_ga.threads import set_cpu_threads

__all__ = [
    "AgreementWeighting",
    "ClassMajor",
    "EPISODE_KEYS",
    "EpisodeStreamStart",
    "EvaluationResult",
    "MetaModel",
    "UniformWeighting",
    "algorithms",
    "anil",
    "as_episode",
    "callbacks",
    "class_major",
    "confidence_interval",
    "conv4",
    "datasets",
    "episode",
    "evaluate_tasks",
    "evaluation",
    "exact_batch_norm",
    "inner_optimizers",
    "inner_rates",
    "few_shot_episodes",
    "group_by_class",
    "layers",
    "mlp",
    "models",
    "multi_step_loss",
    "numpy_episodes",
    "paired_difference",
    "protocols",
    "sampler",
    "set_cpu_threads",
    "stateless_random",
]
