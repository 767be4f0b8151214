"""The parts of HMR training: config, data batches, the loss module, optimiser, checkpoints, logging.

``openhmr.train`` assembles them into the trainer.
"""
