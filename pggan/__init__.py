"""pggan: Progressive Growing of GANs (Karras et al., ICLR 2018) in JAX and Flax NNX.

`pggan.load_generator(path)` loads a trained generator (`pggan.trained_generator`); it is imported on first
use, so that `import pggan.<module>` stays light.
"""

__all__ = ["load_generator"]


def __getattr__(name: str):
    if name == "load_generator":
        from pggan.trained_generator import load_generator

        return load_generator
    raise AttributeError(f"module 'pggan' has no attribute {name!r}")
