"""Layers keras_ga provides for base models."""

from keras_ga.batch_norm import BatchNormalization
from keras_ga.pooling import MaxPooling2D

__all__ = ["BatchNormalization", "MaxPooling2D"]
