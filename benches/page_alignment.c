/* The kernel's page-cache copy against the user buffer's alignment
 * (docs/DECISIONS.md #68): 12,800 blocks of 8 KiB appended, rewritten and
 * read back through pwrite/pread from a buffer 0, 16, 64 or 2,048 bytes
 * past a page boundary; system time per block (getrusage), the four
 * offsets interleaved in every round; prints the median over rounds of
 * each offset's paired difference against offset 0.
 *
 * Build and run: cc -O2 -o /tmp/page_alignment benches/page_alignment.c
 *                /tmp/page_alignment [DIR] [ROUNDS]   (default /tmp, 21) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define BLOCKS 12800
#define BLK 8192
#define MAXR 201

static double sys_seconds(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    int rounds = argc > 2 ? atoi(argv[2]) : 21;
    if (rounds < 1 || rounds > MAXR) rounds = 21;
    static const int offs[4] = {0, 16, 64, 2048};
    static double t[MAXR][4][3];
    char path[4096];
    snprintf(path, sizeof path, "%s/page_alignment.%d", dir, (int)getpid());
    char *base = aligned_alloc(4096, 4 * 4096);
    if (!base) return 1;
    memset(base, 'x', 4 * 4096);
    for (int r = 0; r <= rounds; r++) /* round 0 warms up */
        for (int k = 0; k < 4; k++) {
            char *buf = base + 4096 + offs[k];
            int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
            if (fd < 0) { perror(path); return 1; }
            double s0 = sys_seconds();
            for (long i = 0; i < BLOCKS; i++) { buf[0] = (char)i; if (pwrite(fd, buf, BLK, i * BLK) != BLK) return 1; }
            double s1 = sys_seconds();
            for (long i = 0; i < BLOCKS; i++) { buf[0] = (char)i; if (pwrite(fd, buf, BLK, i * BLK) != BLK) return 1; }
            double s2 = sys_seconds();
            for (long i = 0; i < BLOCKS; i++) if (pread(fd, buf, BLK, i * BLK) != BLK) return 1;
            double s3 = sys_seconds();
            close(fd);
            unlink(path);
            if (r > 0) {
                t[r - 1][k][0] = (s1 - s0) / BLOCKS * 1e6;
                t[r - 1][k][1] = (s2 - s1) / BLOCKS * 1e6;
                t[r - 1][k][2] = (s3 - s2) / BLOCKS * 1e6;
            }
        }
    printf("%d rounds, system time µs per 8 KiB block; medians of paired differences against offset 0\n", rounds);
    printf("| buffer offset | append | rewrite | read |\n|---:|---:|---:|---:|\n");
    for (int k = 0; k < 4; k++) {
        double col[3];
        for (int j = 0; j < 3; j++) {
            double v[MAXR];
            for (int r = 0; r < rounds; r++) v[r] = k ? t[r][k][j] - t[r][0][j] : t[r][0][j];
            col[j] = median(v, rounds);
        }
        if (k == 0) printf("| 0 (absolute) | %.3f | %.3f | %.3f |\n", col[0], col[1], col[2]);
        else printf("| %d | %+.3f | %+.3f | %+.3f |\n", offs[k], col[0], col[1], col[2]);
    }
    return 0;
}
