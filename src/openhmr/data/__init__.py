"""Data: person crops (``crop``), and the readers, augmentation and loaders used for training."""
