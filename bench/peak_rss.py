"""python -m bench.peak_rss COMMAND ...: runs COMMAND (its output to /dev/null) and prints "wall_ms peak_rss_kib
exit_code", then COMMAND's last stderr line. A process of its own because Linux carries the peak resident memory of
the process that forks into the child across exec: a child forked by the benchmark (1+ GiB of weights and arrays)
would report the benchmark's peak, not its own."""
import os
import subprocess
import sys
import time

start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = child.stderr.read().decode(errors="replace").strip()
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
print(f"{(time.perf_counter() - start) * 1e3:.1f} {usage.ru_maxrss} {child.returncode}")
print(err.splitlines()[-1] if err else "no output")
