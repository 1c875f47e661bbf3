#!/usr/bin/env bash
# Installable packages of pg_ephcrypt, built from `cargo pgrx package`.
#
#   scripts/package.sh [[NAME=]PG_CONFIG ...]
#
# Default: Debian's PostgreSQL 15 (/usr/lib/postgresql/15/bin/pg_config).
# For every pg_config given (each a server build whose major cargo-pgrx was
# initialised for, ~/.pgrx/config.toml), into build/packages/ (PACKAGE_OUT):
#   * pg_ephcrypt-<version>-<NAME>-<arch>.tar.gz: the library, the control
#     file and every SQL script, an install.sh that installs them where that
#     build's pg_config says (the library to a new inode), BUILD-INFO and
#     SHA256SUMS. NAME defaults to pg<major>.
#   * when the server is a Debian package (its postgres binary is owned by
#     the installed package postgresql-<major>):
#     postgresql-<major>-pg-ephcrypt_<version>_<arch>.deb, files under the
#     paths pg_config gives, Depends: postgresql-<major>, root-owned.
# Maintainer field: PACKAGE_MAINTAINER (default below). Extra Debian
# revision: DEB_REVISION (e.g. 1 gives <version>-1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

OUT="${PACKAGE_OUT:-$BUILD/packages}"
MAINTAINER="${PACKAGE_MAINTAINER:-pg_ephcrypt maintainers <pg-ephcrypt@invalid>}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
[ -n "$VERSION" ] || { echo "package.sh: no version in Cargo.toml" >&2; exit 1; }
ARCH_DEB="$(dpkg --print-architecture)"
ARCH="$(uname -m)"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
# Reproducible archives: every file dated at the commit.
EPOCH_TS="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}"
mkdir -p "$OUT"

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("$PG_CONFIG")

# stage_files PG_CONFIG STAGE: cargo pgrx package, plus the released install
# scripts; checks that every file a package must hold is there.
stage_files() {
    local pgc="$1" stage="$2" major="$3"
    rm -rf "$stage"
    cargo pgrx package --pg-config "$pgc" --no-default-features --features "pg$major" \
        --out-dir "$stage" >"$stage.log" 2>&1 || { cat "$stage.log" >&2; return 1; }
    local libdir sharedir
    libdir="$("$pgc" --pkglibdir)"
    sharedir="$("$pgc" --sharedir)"
    install -m 0644 sql/released/pg_ephcrypt--*.sql "$stage$sharedir/extension/"
    local f
    for f in "$libdir/pg_ephcrypt.so" "$sharedir/extension/pg_ephcrypt.control" \
        "$sharedir/extension/pg_ephcrypt--$VERSION.sql" sql/pg_ephcrypt--*--*.sql \
        sql/released/pg_ephcrypt--*.sql; do
        case "$f" in sql/*) f="$sharedir/extension/$(basename "$f")" ;; esac
        [ -f "$stage$f" ] || { echo "package.sh: $f missing from the staged package" >&2; return 1; }
    done
    grep -q "^default_version = '$VERSION'" "$stage$sharedir/extension/pg_ephcrypt.control" ||
        { echo "package.sh: control file does not say default_version = '$VERSION'" >&2; return 1; }
}

build_tarball() {
    local pgc="$1" stage="$2" name="$3" major="$4"
    local libdir sharedir top tmp
    libdir="$("$pgc" --pkglibdir)"
    sharedir="$("$pgc" --sharedir)"
    top="pg_ephcrypt-$VERSION-$name"
    tmp="$OUT/.tar-$name"
    rm -rf "$tmp"
    mkdir -p "$tmp/$top/lib" "$tmp/$top/extension"
    install -m 0644 "$stage$libdir/pg_ephcrypt.so" "$tmp/$top/lib/"
    install -m 0644 "$stage$sharedir"/extension/pg_ephcrypt* "$tmp/$top/extension/"
    cat >"$tmp/$top/BUILD-INFO" <<EOF
pg_ephcrypt $VERSION (commit $COMMIT), built with cargo-pgrx $PGRX_VERSION
for: $("$pgc" --version) (major $major), pg_config $pgc
pkglibdir at build time: $libdir
sharedir at build time: $sharedir
EOF
    cat >"$tmp/$top/install.sh" <<'EOF'
#!/bin/sh
# install.sh [PG_CONFIG]: install this pg_ephcrypt build into the server
# whose pg_config is given (default: pg_config in PATH). The library goes to
# a new inode (copy, then rename), so running servers keep the file they
# mapped; restart them to load the new one.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
pgc="${1:-pg_config}"
want="$(sed -n 's/.*(major \([0-9]*\)).*/\1/p' "$here/BUILD-INFO")"
have="$("$pgc" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')"
[ "$want" = "$have" ] || { echo "install.sh: built for PostgreSQL $want, $pgc is $have" >&2; exit 1; }
(cd "$here" && sha256sum --quiet -c SHA256SUMS)
libdir="$("$pgc" --pkglibdir)"
ext="$("$pgc" --sharedir)/extension"
mkdir -p "$libdir" "$ext"
install -m 0644 "$here/lib/pg_ephcrypt.so" "$libdir/.pg_ephcrypt.so.new"
mv -f "$libdir/.pg_ephcrypt.so.new" "$libdir/pg_ephcrypt.so"
install -m 0644 "$here"/extension/pg_ephcrypt* "$ext/"
echo "installed pg_ephcrypt into $libdir and $ext"
EOF
    chmod 0755 "$tmp/$top/install.sh"
    (cd "$tmp/$top" && sha256sum lib/* extension/* >SHA256SUMS)
    local tarball="$OUT/$top-$ARCH.tar.gz"
    tar -C "$tmp" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH_TS" \
        -czf "$tarball" "$top"
    rm -rf "$tmp"
    log "package: $tarball"
}

build_deb() {
    local pgc="$1" stage="$2" major="$3"
    local libdir sharedir pkg root glibc depends size server_version
    libdir="$("$pgc" --pkglibdir)"
    sharedir="$("$pgc" --sharedir)"
    pkg="postgresql-$major-pg-ephcrypt"
    root="$OUT/.deb-$pkg"
    rm -rf "$root"
    install -d -m 0755 "$root/DEBIAN" "$root$libdir" "$root$sharedir/extension" "$root/usr/share/doc/$pkg"
    install -m 0644 "$stage$libdir/pg_ephcrypt.so" "$root$libdir/"
    install -m 0644 "$stage$sharedir"/extension/pg_ephcrypt* "$root$sharedir/extension/"
    cat >"$root/usr/share/doc/$pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pg_ephcrypt

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
    chmod 0644 "$root/usr/share/doc/$pkg/copyright"
    glibc="$(objdump -T "$root$libdir/pg_ephcrypt.so" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 || true)"
    depends="postgresql-$major"
    [ -z "$glibc" ] || depends="$depends, libc6 (>= $glibc)"
    size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
    server_version="$(dpkg-query -W -f='${Version}' "postgresql-$major")"
    local version="$VERSION${DEB_REVISION:+-$DEB_REVISION}"
    cat >"$root/DEBIAN/control" <<EOF
Package: $pkg
Version: $version
Architecture: $ARCH_DEB
Maintainer: $MAINTAINER
Installed-Size: $size
Depends: $depends
Section: database
Priority: optional
Description: ephemeral encryption of PostgreSQL $major transient files
 pg_ephcrypt seals the transient files of a running PostgreSQL $major server
 (sort, hash and aggregate spill files, parallel-query file sets, temporary
 tables, logical-decoding spill files) with AES-256-GCM under a key that
 lives only in protected memory and dies with the postmaster. Load it with
 shared_preload_libraries = 'pg_ephcrypt' and restart the server.
 .
 Built from commit $COMMIT against PostgreSQL $server_version with
 cargo-pgrx $PGRX_VERSION.
EOF
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
    chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
    local deb="$OUT/${pkg}_${version}_$ARCH_DEB.deb"
    SOURCE_DATE_EPOCH="$EPOCH_TS" dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    rm -rf "$root"
    log "package: $deb ($(dpkg-deb -f "$deb" Depends))"
}

declare -A seen=()
for target in "${targets[@]}"; do
    name="" pgc="$target"
    case "$target" in *=*) name="${target%%=*}" pgc="${target#*=}" ;; esac
    [ -x "$pgc" ] || { echo "package.sh: $pgc is not an executable pg_config" >&2; exit 1; }
    major="$("$pgc" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')"
    [ -n "$major" ] || { echo "package.sh: cannot read the major version from $pgc --version" >&2; exit 1; }
    name="${name:-pg$major}"
    [ -z "${seen[$name]:-}" ] || { echo "package.sh: two builds named $name; give NAME=PG_CONFIG" >&2; exit 1; }
    seen[$name]=1
    grep -qs "^pg$major = " "${PGRX_HOME:-$HOME/.pgrx}/config.toml" ||
        { echo "package.sh: cargo pgrx is not initialised for PostgreSQL $major (cargo pgrx init --pg$major $pgc)" >&2; exit 1; }
    stage="$OUT/.stage-$name"
    log "package: $name ($("$pgc" --version), $pgc)"
    stage_files "$pgc" "$stage" "$major"
    build_tarball "$pgc" "$stage" "$name" "$major"
    owner="$(dpkg-query -S "$("$pgc" --bindir)/postgres" 2>/dev/null | cut -d: -f1 || true)"
    if [ "$owner" = "postgresql-$major" ]; then
        build_deb "$pgc" "$stage" "$major"
    fi
    rm -rf "$stage" "$stage.log"
done
