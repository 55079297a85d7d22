"""Training engine: feature extraction, training rounds, checkpoints, distributed."""
