"""KFP pipelines: training (a nested pipeline per round), sweeps, scheduled retraining; compile
script."""
