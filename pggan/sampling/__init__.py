"""Using a generator: latents and interpolation paths, batched generation, image and video files."""
