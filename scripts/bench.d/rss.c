/* Prints this process's resident memory from /proc/self/status, in KiB: the peak (VmHWM), then
 * what is resident now as anonymous memory (RssAnon: private, really added) and as file pages
 * (RssFile: mapped from the page cache, shared with every other process that maps the file).
 * Not getrusage: its ru_maxrss also counts the parent's memory at exec time. */
#include <stdio.h>
#include <string.h>

int main(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long hwm = -1, anon = -1, file = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0)
            sscanf(line + 6, "%ld", &hwm);
        else if (strncmp(line, "RssAnon:", 8) == 0)
            sscanf(line + 8, "%ld", &anon);
        else if (strncmp(line, "RssFile:", 8) == 0)
            sscanf(line + 8, "%ld", &file);
    }
    if (hwm < 0 || anon < 0 || file < 0)
        return 1;
    printf("%ld %ld %ld\n", hwm, anon, file);
    return 0;
}
