//! The local API's request handling on a live node.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::api_request(data));
