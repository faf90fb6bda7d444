"""Per echild event from Python: with SIGCHLD ignored, os.waitpid(-1, 0) fails with ECHILD (no
children), N times, timed inside the interpreter as chld.py does. Each failure is an echild
event whose Python frames are read while the thread waits without the GIL (through
process_vm_readv). Prints "first_us per_call_us"."""
import os
import signal
import sys
import time


def wait():
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        pass


def main():
    n = max(1, int(sys.argv[1])) if len(sys.argv) > 1 else 1000
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    t0 = time.perf_counter()
    wait()
    first = time.perf_counter() - t0
    t0 = time.process_time()
    for _ in range(n):
        wait()
    per = (time.process_time() - t0) / n
    print(f"{first * 1e6:.3f} {per * 1e6:.3f}")


main()
