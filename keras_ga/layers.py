"""Layers keras_ga provides for base models."""

from keras_ga.batch_norm import BatchNormalization

__all__ = ["BatchNormalization"]
