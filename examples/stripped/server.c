/* A stand-in for a stripped daemon: its server loop ignores SIGCHLD (so that the kernel reaps its
 * workers), and its status check then cannot get a worker's exit status: waitpid() fails with
 * ECHILD. Build it as a distribution would, debug information split off, then stripped:
 *   gcc -g -O1 -o server server.c
 *   objcopy --only-keep-debug server server.debug && strip server */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static __attribute__((noinline)) void start_workers(void) {
    signal(SIGCHLD, SIG_IGN); /* workers reap themselves: the bug */
}

static __attribute__((noinline)) int check_worker(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) < 0) {
        printf("worker %d: %s\n", (int)pid, strerror(errno));
        return -1;
    }
    return WEXITSTATUS(status);
}

int main(void) {
    start_workers();
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/false", "false", (char *)NULL);
        _exit(127);
    }
    return check_worker(pid) == 1 ? 0 : 1;
}
