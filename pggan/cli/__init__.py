"""What the programs in tools/ share: checkpoint-choosing flags and one-line error reporting."""
