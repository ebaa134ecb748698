"""`--distribute`: one mode table (`modes`), the in-process strategies
(`strategies`: MirroredStrategy, DataParallel), this process's place in a
group and where its values come from (`process_group`: flags, environment,
torchrun, SLURM), joining and running the group (`launch`: initialisation,
collectives, who writes, losing a process) and the PyTorch DDP training
loop (`ddp_loop`).
"""
