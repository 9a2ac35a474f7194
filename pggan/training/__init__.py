"""Training: the typed config and its checks, the schedule, the compiled step, the loop, writers and
periodic metrics."""
