"""Synthetic district generator: the true population, each silo's noisy view, and the ground truth."""
