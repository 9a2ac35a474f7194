"""Import of the networks NVIDIA released with PGGAN (TensorFlow `tfutil.Network` pickles).

`importer.import_snapshot(pkl, workdir)` turns an official `(G, D, Gs)` pickle into a pggan
checkpoint; `unpickler` reads the pickle safely, `snapshot` interprets the network states and their
build settings, `convert` maps the official weight layouts onto pggan's parameter trees.
"""
