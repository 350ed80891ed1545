//! `contrail::fuzzing::receiver_body` (docs/FUZZING.md).
#![no_main]

#[global_allocator]
static ALLOCATOR: contrail_fuzz::Limited = contrail_fuzz::Limited;

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrail::fuzzing::receiver_body(data));
