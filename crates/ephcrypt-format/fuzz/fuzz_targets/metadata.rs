#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ephcrypt_format::fuzzing::fuzz_metadata(data);
});
