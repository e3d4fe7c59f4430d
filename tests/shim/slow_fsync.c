/* Slow disk flushes for fault drills: an LD_PRELOAD shim that sleeps
 * PANORAMA_TEST_FSYNC_DELAY_US microseconds after every fdatasync(2) and
 * fsync(2) of the process, once the flush itself is done. It widens the
 * window between "the record is on disk" and "the client hears so", where a
 * client that gives up leaves the server holding a record it never
 * acknowledged. Built by panorama_tests::fault::slow_fsync_shim(). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static long delay_us(void) {
    static long cached = -1;
    if (cached < 0) {
        const char *v = getenv("PANORAMA_TEST_FSYNC_DELAY_US");
        cached = v ? atol(v) : 0;
    }
    return cached;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int r = real(fd);
    if (delay_us() > 0) usleep((useconds_t)delay_us());
    return r;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int r = real(fd);
    if (delay_us() > 0) usleep((useconds_t)delay_us());
    return r;
}
