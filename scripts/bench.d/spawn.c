/* Per exec: posix_spawn PROGRAM and wait for it, N times. The children get the environment of
 * this process plus, when PRELOAD is not empty, LD_PRELOAD=PRELOAD (this process itself runs
 * bare, so every variant is timed by the same parent). Prints microseconds per spawn: wall
 * clock, then CPU time (user + system, of this process and its children), which other load on
 * the machine disturbs less.
 *   spawn N PRELOAD PROGRAM [ARG...] */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static double cpu(void) {
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    return (self.ru_utime.tv_sec + self.ru_stime.tv_sec + children.ru_utime.tv_sec +
            children.ru_stime.tv_sec) * 1e6 +
           self.ru_utime.tv_usec + self.ru_stime.tv_usec + children.ru_utime.tv_usec +
           children.ru_stime.tv_usec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: spawn N PRELOAD PROGRAM [ARG...]\n");
        return 2;
    }
    long n = atol(argv[1]);
    const char *preload = argv[2];
    size_t count = 0;
    while (environ[count])
        count++;
    char **env = calloc(count + 2, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
            env[k++] = environ[i];
    char *var = NULL;
    if (*preload) {
        var = malloc(strlen(preload) + 12);
        sprintf(var, "LD_PRELOAD=%s", preload);
        env[k++] = var;
    }
    env[k] = NULL;
    double t0 = now(), c0 = cpu();
    for (long i = 0; i < n; i++) {
        pid_t pid;
        int r = posix_spawn(&pid, argv[3], NULL, NULL, argv + 3, env);
        if (r != 0) {
            fprintf(stderr, "spawn: posix_spawn %s: %s\n", argv[3], strerror(r));
            return 1;
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "spawn: %s did not exit with 0 (status %#x)\n", argv[3], status);
            return 1;
        }
    }
    double t1 = now(), c1 = cpu();
    printf("%.3f %.3f\n", (t1 - t0) / n, (c1 - c0) / n);
    return 0;
}
