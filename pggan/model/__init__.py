"""The networks and what is computed on them: equalized layers, G and D, losses, D normalizations."""
