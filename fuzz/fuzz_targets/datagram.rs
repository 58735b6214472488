//! The datagram path of a live node: envelope, seal, replay checks, decoding, handling.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::datagram(data));
