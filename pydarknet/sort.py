"""The two sorts of Darknet's NMS, compiled with numba: glibc's qsort as it sorts detection records, and a radix sort
that gives the same order faster when no key is NaN.

glibc's qsort is msort_with_tmp, a top-down merge sort (hence stable); with box.c's nms_comparator (the float
difference of two keys: < 0 -> 1, > 0 -> -1, else 0) it sorts descending, and a NaN compares equal to everything.
`msort` reproduces its merge tree, so even such inconsistent comparisons come out as in C.
"""
import numpy as np

from .jit import kernel


@kernel
def _merge(key, idx, lo, n1, n, tkey, tidx):
    """One merge of glibc's msort_with_tmp: the left element is taken when cmp(left, right) <= 0."""
    i = lo
    e1 = lo + n1
    j = e1
    e2 = lo + n
    t = 0
    while i < e1 and j < e2:
        # nms_comparator: diff = a - b (float); diff < 0 -> 1, diff > 0 -> -1, else 0
        if not (key[i] - key[j] < 0):
            tkey[t] = key[i]
            tidx[t] = idx[i]
            i += 1
        else:
            tkey[t] = key[j]
            tidx[t] = idx[j]
            j += 1
        t += 1
    while i < e1:
        tkey[t] = key[i]
        tidx[t] = idx[i]
        i += 1
        t += 1
    for u in range(t):
        key[lo + u] = tkey[u]
        idx[lo + u] = tidx[u]


MSORT_DEPTH = 128      # levels of msort's explicit stack: enough for any n below 2**127


def msort_stack():
    """The explicit stack msort needs (made by the caller, so that kernels that take it allocate nothing)."""
    return np.empty((3, MSORT_DEPTH), np.int64)


@kernel
def msort(key, idx, n, tkey, tidx, stack):
    """glibc's qsort for these records: msort_with_tmp, a top-down merge sort (n1 = n/2) of key[:n], idx[:n].

    With nms_comparator it sorts descending and stably, and a NaN compares equal to everything, as in C; the merge
    tree is glibc's, so even such inconsistent comparisons come out the same. Iterative, with an explicit stack
    (numba's cache cannot hold recursive functions): msort_stack(), MSORT_DEPTH levels deep.
    """
    stack_lo = stack[0]
    stack_n = stack[1]
    stack_state = stack[2]
    sp = 0
    stack_lo[0] = 0
    stack_n[0] = n
    stack_state[0] = 0
    sp = 1
    while sp > 0:
        top = sp - 1
        lo = stack_lo[top]
        m = stack_n[top]
        if m <= 1:
            sp -= 1
            continue
        n1 = m // 2
        state = stack_state[top]
        if state == 0:                      # sort the left half first
            stack_state[top] = 1
            stack_lo[sp] = lo
            stack_n[sp] = n1
            stack_state[sp] = 0
            sp += 1
        elif state == 1:                    # then the right half
            stack_state[top] = 2
            stack_lo[sp] = lo + n1
            stack_n[sp] = m - n1
            stack_state[sp] = 0
            sp += 1
        else:                               # then merge them
            sp -= 1
            _merge(key, idx, lo, n1, m, tkey, tidx)


@kernel
def _radix_pass(src_u, src_i, dst_u, dst_i, n, shift, count):
    """One stable counting-sort pass on the 11-bit digit at `shift` (count: that digit's histogram)."""
    total = 0
    for b in range(2048):
        c = count[b]
        count[b] = total
        total += c
    for i in range(n):
        b = (src_u[i] >> np.uint32(shift)) & np.uint32(2047)
        j = count[b]
        count[b] = j + 1
        dst_u[j] = src_u[i]
        dst_i[j] = src_i[i]


@kernel
def radix_sort_desc(key, idx, n, ua, ub, ib):
    """Stable descending sort of key[:n] (no NaN), carrying idx: an LSD radix sort on the float bits.

    Without NaN, nms_comparator is a consistent order in which a and b tie exactly when a == b (-0 == 0), so any
    stable sort gives glibc's result. Keys are mapped to unsigned integers whose ascending order is the
    descending order of the floats, with -0 folded into +0; three 11-bit passes, skipping those with one digit.
    """
    for i in range(n):
        key[i] = key[i] + np.float32(0.0)             # -0 -> +0 (key is scratch)
    bits = key[:n].view(np.uint32)
    hist = np.zeros((3, 2048), np.int64)
    for i in range(n):
        u = bits[i]
        if u & np.uint32(0x80000000):
            u = np.uint32(~u)                         # negative: flip all bits
        else:
            u = np.uint32(u | np.uint32(0x80000000))  # positive: flip the sign bit
        u = np.uint32(~u)                             # descending
        ua[i] = u
        hist[0, u & np.uint32(2047)] += 1
        hist[1, (u >> np.uint32(11)) & np.uint32(2047)] += 1
        hist[2, u >> np.uint32(22)] += 1
    in_a = True                                       # where the current order lives: (ua, idx) or (ub, ib)
    for d in range(3):
        if hist[d].max() == n:                        # one digit value: the pass keeps the order
            continue
        if in_a:
            _radix_pass(ua, idx, ub, ib, n, 11 * d, hist[d])
        else:
            _radix_pass(ub, ib, ua, idx, n, 11 * d, hist[d])
        in_a = not in_a
    if not in_a:
        idx[:n] = ib[:n]

