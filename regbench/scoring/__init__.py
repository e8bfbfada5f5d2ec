"""Data Diet (Paul, Ganguli, Dziugaite, NeurIPS 2021): per-sample EL2N and GraNd scores from short runs over
seeds (`regbench score`), and the scores file that `data.prune` reads. Importing the package imports no torch."""
