"""Running a run: objects from the config, the checks that need them, the run folder, checkpoints, the trainer."""
