"""A list's share for this rank (contiguous, in order), and the shares' results gathered back in that order."""


def share(items, rank, size):
    """Items [rank*n/size, (rank+1)*n/size): contiguous shares, sizes differing by at most one."""
    n = len(items)
    return items[rank * n // size:(rank + 1) * n // size]


def gathered(comm, part):
    """Every rank's `part` (a list), concatenated in rank order on rank 0; None on the other ranks."""
    parts = comm.gather_object(part)
    return None if parts is None else [item for p in parts for item in p]
