"""CIFAR-10-C's image corruptions (Hendrycks & Dietterich, 2019) as batched tensor ops: what eval=[corruptions]
measures on and what data.crafted_val builds its shifted validation folds from."""
