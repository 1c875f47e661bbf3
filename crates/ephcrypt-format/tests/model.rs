//! Property test: random sequences of writes (any offset and length, past EOF,
//! rewrites, across the 2 MiB group boundary), reads, truncates/extends, size
//! queries, flushes, reopens with and without remembered state, cache drops
//! and (shared mode) turns of a second handle with its own nonce stream, in
//! both metadata modes, applied to a plain `Vec<u8>` and to the
//! encrypted file; every observable result must be identical (see
//! `fuzzing::check_file_ops`).

use ephcrypt_format::fuzzing::{
    check_file_ops, check_file_ops_cache_limit, check_file_ops_with, FileOp,
};
use ephcrypt_format::{Mode, BLOCK_SIZE, GROUP_BLOCKS};
use proptest::prelude::*;

const B: u64 = BLOCK_SIZE as u64;
const G: u64 = GROUP_BLOCKS as u64 * B;

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..6 * B,
        // Near block boundaries, where the edge cases are.
        (0..6u64, 0..7u64).prop_map(|(k, d)| (k * B + d).saturating_sub(3)),
        // Around the end of group 0 / start of group 1.
        (0..5u64, 0..7u64).prop_map(|(k, d)| (G - 2 * B + k * B + d).saturating_sub(3)),
        Just(0),
    ]
}

fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        0..40usize,
        (BLOCK_SIZE - 3)..(BLOCK_SIZE + 4),
        0..3 * BLOCK_SIZE,
        Just(BLOCK_SIZE),
    ]
}

fn op() -> impl Strategy<Value = FileOp> {
    prop_oneof![
        6 => (offset(), length(), any::<u8>()).prop_map(|(off, len, seed)| FileOp::Write { off, len, seed }),
        4 => (offset(), length()).prop_map(|(off, len)| FileOp::Read { off, len }),
        2 => offset().prop_map(FileOp::SetLen),
        1 => Just(FileOp::Len),
        1 => Just(FileOp::Flush),
        1 => Just(FileOp::Reopen),
        1 => Just(FileOp::ReopenFresh),
        1 => Just(FileOp::Invalidate),
        2 => Just(FileOp::Switch),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Shared),
        Just(Mode::Private { cache_groups: 2 }),
        Just(Mode::PRIVATE),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn encrypted_file_behaves_like_a_vec(ops in prop::collection::vec(op(), 1..32), mode in mode()) {
        check_file_ops(&ops, mode);
    }

    /// Private handles whose cache grows (temp files) behave the same.
    #[test]
    fn a_file_with_a_growing_cache_behaves_like_a_vec(ops in prop::collection::vec(op(), 1..32)) {
        check_file_ops_cache_limit(&ops, Mode::Private { cache_groups: 2 }, 5);
    }

    /// Shared handles that write ahead (the `wal` class) behave the same.
    #[test]
    fn a_file_written_ahead_behaves_like_a_vec(ops in prop::collection::vec(op(), 1..32)) {
        check_file_ops_with(&ops, Mode::Shared, true);
    }
}

/// Sequential 8 KiB reads at an unaligned offset, then small appends: the
/// access patterns of tuplestore and spill files.
#[test]
fn postgres_like_patterns() {
    let mut ops = vec![FileOp::Write {
        off: 0,
        len: 10 * BLOCK_SIZE,
        seed: 1,
    }];
    for i in 0..10 {
        ops.push(FileOp::Read {
            off: 100 + i * B,
            len: BLOCK_SIZE,
        });
    }
    let mut off = 10 * B;
    for i in 0..200u64 {
        let len = (37 + i * 13 % 300) as usize;
        ops.push(FileOp::Write {
            off,
            len,
            seed: i as u8,
        });
        off += len as u64;
        if i % 50 == 49 {
            ops.push(FileOp::Reopen);
        }
    }
    ops.push(FileOp::Read {
        off: 0,
        len: 40 * BLOCK_SIZE,
    });
    ops.push(FileOp::SetLen(3 * B + 5));
    ops.push(FileOp::Write {
        off: 9 * B + 7,
        len: 3,
        seed: 9,
    });
    ops.push(FileOp::Read {
        off: 0,
        len: 11 * BLOCK_SIZE,
    });
    for mode in [
        Mode::Shared,
        Mode::Private { cache_groups: 2 },
        Mode::PRIVATE,
    ] {
        check_file_ops(&ops, mode);
    }
    check_file_ops_with(&ops, Mode::Shared, true);
    check_file_ops_cache_limit(&ops, Mode::Private { cache_groups: 2 }, 3);
}

/// Several groups: gap extension over three groups with two cache slots
/// (forces write-back on eviction), random rewrites (shared: by two handles
/// in turn), truncation into an earlier group, regrowth.
#[test]
fn multi_group_patterns() {
    let mut ops = vec![
        FileOp::Write {
            off: 3 * G + 5,
            len: 100,
            seed: 3,
        },
        FileOp::Read {
            off: G - 10,
            len: 20,
        },
    ];
    for k in [0u64, 2, 1, 3, 0, 2] {
        ops.push(FileOp::Write {
            off: k * G + 7 * B + 11,
            len: BLOCK_SIZE,
            seed: k as u8,
        });
        ops.push(FileOp::Read {
            off: k * G + 7 * B,
            len: 2 * BLOCK_SIZE,
        });
        // Shared: the other handle's turn, its cached pages now stale.
        ops.push(FileOp::Switch);
    }
    ops.extend([
        FileOp::Reopen,
        FileOp::Read {
            off: 0,
            len: 3 * BLOCK_SIZE,
        },
        FileOp::SetLen(G + 3),
        FileOp::Reopen,
        FileOp::SetLen(G),
        FileOp::ReopenFresh,
        FileOp::Write {
            off: 2 * G - 1,
            len: 2,
            seed: 7,
        },
        FileOp::Reopen,
        FileOp::SetLen(0),
        FileOp::Reopen,
        FileOp::Write {
            off: 5,
            len: 5,
            seed: 1,
        },
    ]);
    for mode in [
        Mode::Shared,
        Mode::Private { cache_groups: 2 },
        Mode::PRIVATE,
    ] {
        check_file_ops(&ops, mode);
    }
    check_file_ops_with(&ops, Mode::Shared, true);
    check_file_ops_cache_limit(&ops, Mode::Private { cache_groups: 2 }, 3);
}
