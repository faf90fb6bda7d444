/* What --supervise costs (scripts/bench section 7), timed inside the process so start-up is not
 * counted:
 *   syscalls getppid N   N cheap system calls (every one runs the seccomp filter); prints
 *                        nanoseconds per call in this thread's CPU time (the filter runs there)
 *   syscalls notify N    N rt_sigaction(SIGCHLD, handler): every one is sent to the supervisor
 *                        and waits for its answer; prints microseconds per call, wall clock (the
 *                        supervisor's work is in another process)
 *   syscalls events N    N times ignore SIGCHLD (an event) and restore it (a notification that
 *                        is none); prints microseconds per pair, wall clock */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void on_chld(int s) { (void)s; }

static double now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    long n = atol(argv[2]);
    if (strcmp(argv[1], "getppid") == 0) {
        for (long i = 0; i < n / 20 + 1; i++) /* warm up */
            syscall(SYS_getppid);
        double t0 = now(CLOCK_THREAD_CPUTIME_ID);
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
        printf("%.3f\n", (now(CLOCK_THREAD_CPUTIME_ID) - t0) / n);
        return 0;
    }
    if (strcmp(argv[1], "events") == 0) {
        signal(SIGCHLD, SIG_DFL);
        double t0 = now(CLOCK_MONOTONIC);
        for (long i = 0; i < n; i++) {
            signal(SIGCHLD, SIG_IGN);
            signal(SIGCHLD, SIG_DFL);
        }
        printf("%.3f\n", (now(CLOCK_MONOTONIC) - t0) / n / 1000);
        return 0;
    }
    struct sigaction act = {0};
    act.sa_handler = on_chld;
    sigemptyset(&act.sa_mask);
    sigaction(SIGCHLD, &act, NULL); /* the first one builds the supervisor's view of us */
    double t0 = now(CLOCK_MONOTONIC);
    for (long i = 0; i < n; i++)
        sigaction(SIGCHLD, &act, NULL);
    printf("%.3f\n", (now(CLOCK_MONOTONIC) - t0) / n / 1000);
    return 0;
}
