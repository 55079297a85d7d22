"""KFP pipelines: training (unrolled rounds), sweeps, scheduled retraining; compile script."""
