"""Model soups (Wortsman et al., "Model soups", ICML 2022): `regbench soup` averages the weights of runs
fine-tuned from one initialisation. Which runs may be souped and where the soup goes (regbench.soups.ingredients,
torch-free), the recipes (regbench.soups.recipes), norm statistics recomputed on the training data
(regbench.soups.batch_stats), and cooking and writing the soup's run directory (regbench.soups.cook)."""
