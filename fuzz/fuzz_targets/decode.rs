//! Image decoding with the gateway's limits: any bytes, no panic, and
//! nothing decoded past the limits (decompression bombs included).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    likeness_http::fuzzing::decode_image(data);
});
