/* Per hooked call, not watched: N calls of sigaction(SIGUSR1, &act, &old), timed inside the
 * process so that start-up is not counted, in this thread's CPU time (a system call is CPU time,
 * and other load on the machine does not count). Prints nanoseconds per call. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void on_usr1(int s) { (void)s; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct sigaction act = {0}, old;
    act.sa_handler = on_usr1;
    sigemptyset(&act.sa_mask);
    for (long i = 0; i < n / 20 + 1; i++) /* warm up */
        sigaction(SIGUSR1, &act, &old);
    double t0 = now();
    for (long i = 0; i < n; i++)
        sigaction(SIGUSR1, &act, &old);
    double t1 = now();
    printf("%.3f\n", (t1 - t0) / n);
    return 0;
}
