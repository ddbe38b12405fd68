"""Timing a step as the loop runs it: the step-time tables and the probes beside a fixed run.
Nothing here decides a run's numbers, so no run key hashes it (docs/method.md)."""
