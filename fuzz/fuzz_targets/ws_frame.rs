//! libFuzzer entry for `fhir_ws_tests::fuzz::ws_frame` (see that module).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fhir_ws_tests::fuzz::ws_frame(data));
