//! The fuzz entry points run on a few thousand random and mutated inputs on
//! stable Rust, so they cannot rot between cargo-fuzz runs.

use ephcrypt_format::fuzzing::{
    fuzz_file_ops, fuzz_header, fuzz_header_bytes, fuzz_metadata, fuzz_metadata_page,
    fuzz_open_block, fuzz_read_file, fuzz_sealed_block, fuzz_tamper_block,
};

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// Flip bits, overwrite bytes, cut or extend: what a fuzzer's mutator does.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            match self.below(5) {
                0 | 1 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                2 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = self.next() as u8;
                }
                3 => {
                    let cut = self.below(v.len() + 1);
                    v.truncate(cut);
                }
                _ => {
                    let extra = self.below(40);
                    let more = self.bytes(extra);
                    v.extend_from_slice(&more);
                }
            }
        }
        v
    }
}

#[test]
fn header_entry_point() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let genuine = fuzz_header_bytes();
    fuzz_header(&genuine);
    fuzz_header(&[]);
    for _ in 0..3000 {
        let len = rng.below(100);
        fuzz_header(&rng.bytes(len));
        fuzz_header(&rng.mutate(&genuine));
    }
}

#[test]
fn open_block_entry_point() {
    let mut rng = Rng(0x0fed_cba9_8765_4321);
    for _ in 0..1500 {
        let index = rng.below(4) as u64;
        let mut seed = index.to_le_bytes().to_vec();
        let len = 1 + rng.below(300);
        seed.extend_from_slice(&fuzz_sealed_block(index, len));
        fuzz_open_block(&seed); // genuine: must open
        fuzz_open_block(&rng.mutate(&seed));
        let len = rng.below(400);
        fuzz_open_block(&rng.bytes(len));
    }
    let mut full = 3u64.to_le_bytes().to_vec();
    full.extend_from_slice(&fuzz_sealed_block(3, 8192));
    fuzz_open_block(&full);
    for _ in 0..200 {
        fuzz_open_block(&rng.mutate(&full));
    }
}

#[test]
fn tamper_entry_point() {
    let mut rng = Rng(0x5555_aaaa_3333_cccc);
    fuzz_tamper_block(&[]);
    for _ in 0..1500 {
        let len = rng.below(24);
        fuzz_tamper_block(&rng.bytes(len));
    }
}

#[test]
fn metadata_entry_point() {
    let mut rng = Rng(0x1357_9bdf_2468_ace0);
    fuzz_metadata(&[]);
    for (group, count, final_group) in [
        (0u64, 0u16, true),
        (0, 5, true),
        (1, 256, false),
        (3, 1, true),
    ] {
        let mut seed = vec![group as u8];
        seed.extend_from_slice(&fuzz_metadata_page(group, count, final_group));
        fuzz_metadata(&seed); // genuine: must open
        for _ in 0..300 {
            fuzz_metadata(&rng.mutate(&seed));
        }
    }
    for _ in 0..300 {
        let len = rng.below(9000);
        fuzz_metadata(&rng.bytes(len));
    }
}

#[test]
fn file_ops_entry_point() {
    let mut rng = Rng(0x7777_1111_2222_9999);
    for _ in 0..300 {
        let len = rng.below(120);
        fuzz_file_ops(&rng.bytes(len));
    }
}

#[test]
fn read_file_entry_point() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    fuzz_read_file(&[]);
    // Untouched regions (the genuine file) and genuine-length garbage.
    fuzz_read_file(&[1]);
    fuzz_read_file(&[2]);
    for _ in 0..1000 {
        let sel = rng.below(3) as u8;
        let len = match rng.below(3) {
            0 => rng.below(64),
            1 => 3 * 8192 + 500,
            _ => rng.below(40_000),
        };
        let mut data = vec![sel];
        data.extend_from_slice(&rng.bytes(len));
        fuzz_read_file(&data);
    }
}
