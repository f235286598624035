//! A policy file as an operator might write it: any text loads or is
//! refused with problems, never a panic; a policy that loads evaluates.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    likeness_http::fuzzing::policy_file(data);
});
