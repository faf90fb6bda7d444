/* The floor: an empty shared library, whose load cost is all the loader's. */
int sigaudit_bench_empty;
