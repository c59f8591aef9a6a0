"""ocrexp's Optuna sweeper plugin for Hydra (config and entry point in ``sweeper``)."""
