"""`python -m regbench ...` is the same as the `regbench` command."""
from regbench.cli import main

main()
