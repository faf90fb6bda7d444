/* Per event: ignores and restores SIGCHLD N times (each ignore is one event in log mode), timed
 * inside the process: the loop in this thread's CPU time (other load on the machine does not
 * count), the first ignore, which pays for one-time set-up, on its own by the wall clock.
 * Prints "first_us per_call_us".
 *   chld N */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double clock_us(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* Not inlined, so the backtrace has a frame of ours to name. */
__attribute__((noinline)) void ignore_sigchld(void) { signal(SIGCHLD, SIG_IGN); }
__attribute__((noinline)) void restore_sigchld(void) { signal(SIGCHLD, SIG_DFL); }

int main(int argc, char **argv) {
    long n = argc > 1 && atol(argv[1]) > 0 ? atol(argv[1]) : 1000;
    double t0 = clock_us(CLOCK_MONOTONIC);
    ignore_sigchld();
    double first = clock_us(CLOCK_MONOTONIC) - t0;
    restore_sigchld();
    t0 = clock_us(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < n; i++) {
        ignore_sigchld();
        restore_sigchld();
    }
    printf("%.3f %.3f\n", first, (clock_us(CLOCK_THREAD_CPUTIME_ID) - t0) / n);
    return 0;
}
