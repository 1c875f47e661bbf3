//! Property test: random sequences of writes (any offset and length, past EOF,
//! rewrites), reads, truncates/extends, size queries, reopens and cache drops,
//! applied to a plain `Vec<u8>` and to the encrypted file; every observable
//! result must be identical (see `fuzzing::check_file_ops`).

use ephcrypt_format::fuzzing::{check_file_ops, FileOp};
use ephcrypt_format::BLOCK_SIZE;
use proptest::prelude::*;

const B: u64 = BLOCK_SIZE as u64;

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..6 * B,
        // Near block boundaries, where the edge cases are.
        (0..6u64, 0..7u64).prop_map(|(k, d)| (k * B + d).saturating_sub(3)),
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
        1 => Just(FileOp::Reopen),
        1 => Just(FileOp::InvalidateCache),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encrypted_file_behaves_like_a_vec(ops in prop::collection::vec(op(), 1..40), start_empty in any::<bool>()) {
        check_file_ops(&ops, start_empty);
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
    check_file_ops(&ops, false);
    check_file_ops(&ops, true);
}
