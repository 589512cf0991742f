"""A list's share for this rank (contiguous, in order), and the shares' results gathered back in that order."""


def share(items, rank, size):
    """Items [rank*n/size, (rank+1)*n/size): contiguous shares, sizes differing by at most one."""
    n = len(items)
    return items[rank * n // size:(rank + 1) * n // size]


def gathered(comm, part):
    """Every rank's `part` (a list), concatenated in rank order on rank 0; None on the other ranks."""
    parts = comm.gather_object(part)
    return None if parts is None else [item for p in parts for item in p]


def by_shares(comm, items, work):
    """work(items) -> one result per item, in order. One process: work(items) itself (streamed as it goes). Several
    ranks: each runs work over its share; rank 0 gets every result in the list's order, the other ranks none."""
    if comm.size == 1:
        return work(items)
    return gathered(comm, list(work(share(items, comm.rank, comm.size)))) or []
