"""`regbench probe`: concatenated multi-seed representations (Zhang & Bottou, ICML 2023, "Learning useful
representations for shifting tasks and distributions"). The penultimate features of several completed runs are
concatenated and a linear probe is trained on a target dataset, for k = 1..K concatenated runs. The torch-free
checks (regbench.probing.plan) run before anything is written; then features (regbench.probing.features), the probe
(regbench.probing.linear) and probe.json (regbench.probing.report)."""
