"""Lightning callbacks of a run: checkpoints and run state, epoch lines and their clock, weight averaging,
predictions."""
