//! The `stream_decode` target: arbitrary bytes into the send stream decoder. It must
//! never panic; a stream it accepts must re-encode to exactly the same bytes
//! (`encode(decode(x)) == x`, the decoder is strict about attribute order so that this
//! holds) and decode again to the same commands; and the receive side, given the same
//! bytes on an empty model filesystem, must answer with a typed error or a result,
//! never a panic.
//!
//! What it does not cover: whether a stream the receive side accepts has the meaning
//! the sender intended (the `send_receive` target checks streams the engine made), and
//! stream v2/v3 commands (the engine speaks v1 only).

use cowproof_engine::reference::model_fs::ModelFs;
use cowproof_engine::reference::receive::receive_bytes;
use cowproof_engine::stream::{decode, encode};

/// The `stream_decode` target.
pub fn check_stream_decode(data: &[u8]) -> Result<(), String> {
    let mut receiver = ModelFs::new();
    let _ = receive_bytes(&mut receiver, data);
    let Ok(commands) = decode(data) else {
        return Ok(());
    };
    let encoded = encode(&commands)
        .map_err(|error| format!("a decoded stream does not encode: {error}\n{commands:#?}"))?;
    if encoded != data {
        let first_difference = encoded
            .iter()
            .zip(data)
            .position(|(left, right)| left != right)
            .unwrap_or(encoded.len().min(data.len()));
        return Err(format!(
            "encode(decode(x)) != x: {} bytes in, {} bytes out, first difference at byte {first_difference}",
            data.len(),
            encoded.len()
        ));
    }
    let again = decode(&encoded).map_err(|error| format!("re-encoded stream fails: {error}"))?;
    (again == commands)
        .then_some(())
        .ok_or_else(|| "decode(encode(commands)) != commands".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_commands_and_random_bytes_pass() {
        for seed in 0..50 {
            let commands = cowproof_engine::testing::random_stream_commands(seed, 8);
            let bytes = encode(&commands).expect("encodes");
            check_stream_decode(&bytes).expect("valid stream");
            check_stream_decode(&cowproof_engine::testing::seeded_bytes(64, seed))
                .expect("garbage is rejected, not a failure");
        }
    }
}
