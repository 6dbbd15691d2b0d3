"""The four simulated silos and the synthetic district generator; never imported by production code."""
