//! See fuzz/README.md and `kubelet_gate::fuzzing::docker_json` for the invariant.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kubelet_gate::fuzzing::docker_json(data));
