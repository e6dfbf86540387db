//! See fuzz/README.md and `kubelet_gate::fuzzing::attributes` for the invariant.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kubelet_gate::fuzzing::attributes(data));
