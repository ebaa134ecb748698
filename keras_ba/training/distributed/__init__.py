"""`--distribute`: one mode table (`modes`), the in-process strategies
(`strategies`: MirroredStrategy, DataParallel), process groups and their
launchers (`launch`: flags, environment, torchrun, SLURM) and the PyTorch
DDP training loop (`ddp_loop`).
"""
