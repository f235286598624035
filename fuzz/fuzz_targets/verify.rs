//! `likeness verify`'s reading of a file: any bytes, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    likeness_http::fuzzing::verify_file(data);
});
