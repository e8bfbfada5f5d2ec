"""`python -m regbench ...` is the same as the `regbench` command."""
from regbench.cli import main

# Guarded: spawned DDP ranks import this module again and must not start a second command.
if __name__ == "__main__":
    main()
