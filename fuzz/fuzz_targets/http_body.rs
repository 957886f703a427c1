//! libFuzzer entry for `fhir_ws_tests::fuzz::http_body` (see that module).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fhir_ws_tests::fuzz::http_body(data));
