"""Evaluation metrics: SWD, MS-SSIM, and FID / KID / IS / precision-recall on the FID Inception-v3
(under the preprocessing protocol of a published tool) and precision-recall on VGG16.

The usual entry point is `MetricSuite`; the per-metric modules expose the pieces (docs/metrics.md).
"""

from pggan.metrics.errors import MetricError, MetricInputError, UnsafeWeightsFileError, WeightsFileError
from pggan.metrics.feature_extraction import InceptionFeatureExtractor, VGG16FeatureExtractor
from pggan.metrics.inception_weights import INCEPTION_WEIGHTS, WEIGHTS_ENV, WEIGHTS_URL
from pggan.metrics.protocols import DEFAULT_PROTOCOL, PROTOCOLS
from pggan.metrics.suite import (
    ALL_METRICS,
    INCEPTION_METRICS,
    MIN_IMAGES,
    PIXEL_METRICS,
    REAL_METRICS,
    VGG16_METRICS,
    MetricSuite,
    parse_metric_names,
)
from pggan.metrics.vgg16_weights import VGG16_WEIGHTS

__all__ = [
    "ALL_METRICS",
    "DEFAULT_PROTOCOL",
    "INCEPTION_METRICS",
    "INCEPTION_WEIGHTS",
    "InceptionFeatureExtractor",
    "MetricError",
    "MetricInputError",
    "MetricSuite",
    "MIN_IMAGES",
    "PIXEL_METRICS",
    "PROTOCOLS",
    "REAL_METRICS",
    "UnsafeWeightsFileError",
    "VGG16_METRICS",
    "VGG16_WEIGHTS",
    "VGG16FeatureExtractor",
    "WEIGHTS_ENV",
    "WEIGHTS_URL",
    "WeightsFileError",
    "parse_metric_names",
]
