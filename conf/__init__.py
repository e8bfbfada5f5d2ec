"""regbench's Hydra configs, shipped inside the package as `regbench.conf` (see pyproject.toml)."""
