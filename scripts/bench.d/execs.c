/* Per exec: posix_spawn PROGRAM and wait for it, N times for each variant, the variants taken in
 * turn one exec at a time (a machine's load drifts slowly, so every variant sees the same load).
 * A variant is a library to preload into the child ("" for none); this process itself runs bare.
 * Prints one line per variant, in the order given: the median and quartiles of the child's own
 * CPU time (user + system, from wait4: the exec, the loader, the program, nothing of ours), and
 * the median wall-clock time of the spawn and wait, in microseconds.
 *   execs N PROGRAM PRELOAD... */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The environment without LD_PRELOAD, plus LD_PRELOAD=preload unless it is empty. */
static char **env_for(const char *preload) {
    size_t count = 0;
    while (environ[count])
        count++;
    char **env = calloc(count + 2, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
            env[k++] = environ[i];
    if (*preload) {
        char *var = malloc(strlen(preload) + 12);
        sprintf(var, "LD_PRELOAD=%s", preload);
        env[k++] = var;
    }
    return env;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: execs N PROGRAM PRELOAD...\n");
        return 2;
    }
    long n = atol(argv[1]);
    char *program = argv[2];
    int variants = argc - 3;
    char **envs[variants];
    for (int v = 0; v < variants; v++)
        envs[v] = env_for(argv[3 + v]);
    double *cpu = calloc((size_t)n * variants, sizeof *cpu);
    double *wall = calloc((size_t)n * variants, sizeof *wall);
    char *args[] = {program, NULL};
    for (long i = 0; i < n; i++)
        for (int turn = 0; turn < variants; turn++) {
            int v = (int)((turn + i) % variants);
            pid_t pid;
            int status;
            struct rusage ru;
            double t0 = now_us();
            int r = posix_spawn(&pid, program, NULL, NULL, args, envs[v]);
            if (r != 0) {
                fprintf(stderr, "execs: posix_spawn %s: %s\n", program, strerror(r));
                return 1;
            }
            if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
                fprintf(stderr, "execs: %s did not exit with 0 (status %#x)\n", program, status);
                return 1;
            }
            wall[v * n + i] = now_us() - t0;
            cpu[v * n + i] = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                             ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
        }
    for (int v = 0; v < variants; v++) {
        double *c = cpu + v * n, *w = wall + v * n;
        qsort(c, n, sizeof *c, by_value);
        qsort(w, n, sizeof *w, by_value);
        printf("%.1f %.1f %.1f %.1f\n", c[n / 2], c[n / 4], c[3 * n / 4], w[n / 2]);
    }
    return 0;
}
