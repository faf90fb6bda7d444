/* Runs a command and prints its peak resident memory in KiB (ru_maxrss) on stderr's last line,
 * as GNU time's %M does. The kernel keeps the high-water mark across execve, so a command started
 * straight from a large parent (the benchmark's Python) would show the parent's memory: this
 * small parent keeps that out of the figure.
 *   maxrss COMMAND [ARG...] */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: maxrss COMMAND [ARG...]\n");
        return 2;
    }
    pid_t child = fork();
    if (child == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(child, &status, 0, &ru) < 0)
        return 125;
    fprintf(stderr, "maxrss=%ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
