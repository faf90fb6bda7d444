"""Per event from Python: signal.signal(SIGCHLD, SIG_IGN) then SIG_DFL, N times, timed inside
the interpreter: the loop in process CPU time (other load on the machine does not count), the
first ignore, which pays for one-time set-up, on its own by the wall clock.
Prints "first_us per_call_us"."""
import signal
import sys
import time


def ignore():
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def restore():
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def main():
    n = max(1, int(sys.argv[1])) if len(sys.argv) > 1 else 1000
    t0 = time.perf_counter()
    ignore()
    first = time.perf_counter() - t0
    restore()
    t0 = time.process_time()
    for _ in range(n):
        ignore()
        restore()
    per = (time.process_time() - t0) / n
    print(f"{first * 1e6:.3f} {per * 1e6:.3f}")


main()
