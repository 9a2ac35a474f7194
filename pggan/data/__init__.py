"""Datasets and the input pipeline: preparation (sources, builder), reading (dataset), training input
(pipeline, device_dataset, augment)."""
