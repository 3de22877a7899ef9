"""trainer: a lean functional MALTML trainer and its baselines."""
