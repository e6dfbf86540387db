//! See fuzz/README.md and `kubelet_gate::fuzzing::log_options` for the invariant.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kubelet_gate::fuzzing::log_options(data));
