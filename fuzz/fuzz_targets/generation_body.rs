//! A `POST /v1/generations` body as the handler reads it: any bytes, no
//! panic, every refusal a registered code.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    likeness_http::fuzzing::generation_body(data);
});
