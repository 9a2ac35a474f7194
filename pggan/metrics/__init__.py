"""Evaluation metrics: SWD, MS-SSIM, and FID / KID / IS / precision-recall on the FID Inception-v3.

The usual entry point is `MetricSuite`; the per-metric modules expose the pieces (see METRICS.md).
"""

from pggan.metrics.errors import (MetricError, MetricInputError, UnsafeWeightsFileError,
                                  WeightsFileError)
from pggan.metrics.inception_features import InceptionFeatureExtractor
from pggan.metrics.inception_weights import WEIGHTS_ENV, WEIGHTS_URL, resolve_weights_path
from pggan.metrics.suite import ALL_METRICS, INCEPTION_METRICS, MIN_IMAGES, MetricSuite, parse_metric_names

__all__ = [
    "ALL_METRICS", "INCEPTION_METRICS", "InceptionFeatureExtractor", "MetricError",
    "MetricInputError", "MetricSuite", "MIN_IMAGES", "UnsafeWeightsFileError", "WEIGHTS_ENV", "WEIGHTS_URL",
    "WeightsFileError", "parse_metric_names", "resolve_weights_path",
]
