#!/usr/bin/env bash
# For each server build: how its postgres executable is bound (readelf -d)
# and which libc functions relevant to file I/O it imports (objdump -T, UND).
#   PG_MAJORS="17 18" ./scripts/server-audit.sh     (default: all builds)
# Needs the servers set up (scripts/setup.sh); prints Markdown.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" >/dev/null

# Functions through which PostgreSQL could read or write file contents,
# learn sizes, move descriptors, or bypass libc's file I/O altogether.
IO_RE='^(open|open64|openat|openat64|__open_2|__open64_2|creat|read|__read_chk|pread|pread64|__pread_chk|__pread64_chk|readv|preadv|preadv64|preadv2|write|writev|pwrite|pwrite64|pwritev|pwritev64|pwritev2|copy_file_range|sendfile|sendfile64|splice|tee|vmsplice|mmap|mmap64|munmap|fcntl|fcntl64|dup|dup2|dup3|stat|stat64|fstat|fstat64|lstat|lstat64|fstatat|fstatat64|newfstatat|statx|__xstat|__fxstat|__lxstat|__xstat64|__fxstat64|__lxstat64|__fxstatat|lseek|lseek64|ftruncate|ftruncate64|truncate|truncate64|fallocate|posix_fallocate|posix_fallocate64|posix_fadvise|posix_fadvise64|sync_file_range|fsync|fdatasync|syncfs|close|unlink|unlinkat|rename|renameat|shm_open|memfd_create|fopen|fopen64|io_uring_.*|__io_uring_.*|io_setup|io_submit)$'

echo "| build | version | binding (readelf -d) | RELRO | file-I/O imports (UND) | liburing |"
echo "|---|---|---|---|---|---|"
for t in $TARGETS; do
    cfg="$(target_pg_config "$t")"
    bin="$("$cfg" --bindir)/postgres"
    version="$("$bin" --version | sed 's/^postgres (PostgreSQL) //')"
    flags="$(readelf -d "$bin" | awk '/\(FLAGS\)/ {$1=$2=""; f=f "FLAGS:" $0 ";"} /\(FLAGS_1\)/ {$1=$2=$3=""; f=f " FLAGS_1:" $0} END {print f}' | tr -s ' ')"
    case "$flags" in *BIND_NOW* | *" NOW"*) binding="BIND_NOW (${flags# })" ;; *) binding="lazy (${flags# })" ;; esac
    if readelf -lW "$bin" | grep -q GNU_RELRO; then
        case "$binding" in BIND_NOW*) relro=full ;; *) relro=partial ;; esac
    else
        relro=none
    fi
    imports="$(objdump -T "$bin" | awk '/\*UND\*/ {print $NF}' | grep -E "$IO_RE" | sort -u | tr '\n' ' ')"
    uring="$(readelf -d "$bin" | grep -o 'liburing[^]]*' || true)"
    uring_syms="$(objdump -T "$bin" | awk '/\*UND\*/ {print $NF}' | grep -c '^io_uring\|^__io_uring' || true)"
    echo "| $t | $version | $binding | $relro | ${imports% } | ${uring:-no} (${uring_syms} io_uring symbols) |"
done
