"""What the programs in pggan/cli share (the console scripts pggan-*, and tools/ wraps them): checkpoint-choosing
flags and one-line error reporting."""
