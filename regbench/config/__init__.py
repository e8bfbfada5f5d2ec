"""Checks of a composed run config before anything trains: values, keys, the trainer group, and each component
against the run's shape."""
