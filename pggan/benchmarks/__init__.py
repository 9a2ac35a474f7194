"""Measuring training speed: the compiled step, the FLOP model, device peaks, recipe projections.

Used by `tools/benchmark.py`; nothing here is needed for training. Importable without
tensorflow-datasets or grain (GPU machines may lack them): the reading stack is imported only by the
input-pipeline and quality modes of the tool.
"""
