"""Training and validation across processes and machines, on MPI (mpi4py) and NCCL (through CuPy).

comm.py     the communicator: rank, size, local rank, allreduce of one flat buffer, broadcast, gather, barrier,
            abort; `world()` is this process's (Single outside mpiexec)
replicas.py what the trainers call: `-sync allreduce` (the updates summed before each step, synchronised
            batch-norm) and `-sync darknet` (pjreddie's weight averaging every 4 steps)
shard.py    a list's share for this rank, and the shares gathered back in order (by_shares: detector valid,
            recall and map, classifier valid, training's -map)
launch.py   `-gpus 0,1,...`: the mpiexec beside this Python, one rank a GPU, Ctrl-C forwarded
"""
