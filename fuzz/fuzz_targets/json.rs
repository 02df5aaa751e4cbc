//! Plain JSON decoding never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = happystreams::codec::json::decode_plain(data);
});
