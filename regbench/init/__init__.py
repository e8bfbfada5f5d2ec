"""Starting a run from saved weights (the `init` config section): which checkpoint `init.from` names
(regbench.init.source, torch-free), how its keys fit the backbone (regbench.init.weights), and frozen norm
statistics during training (regbench.init.frozen_norms)."""
