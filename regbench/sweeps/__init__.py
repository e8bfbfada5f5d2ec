"""Sweeps: preflight of every job, the sweep.json index and summary, and the launchers (local, submitit, SLURM)."""
