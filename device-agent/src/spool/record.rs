//! One spool record as it lies on disk, apart from any IO:
//!
//! ```text
//! body_len: u32 LE | crc32(body): u32 LE | body
//! body = seq: u64 LE | created_ms: u64 LE | qos: u8 | topic_len: u16 LE | topic (UTF-8) | payload
//! ```
//!
//! The length and checksum come first so that a scan can tell a whole record from a torn one (the process or
//! the power died mid-write) or a rotten one, and never hand either on as a message.

/// The length and checksum before each body.
pub const HEADER_BYTES: usize = 8;
/// seq, created_ms, qos and topic_len.
const FIXED_BODY_BYTES: usize = 8 + 8 + 1 + 2;

/// A message as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its position in its class's log, from 0, never reused.
    pub seq: u64,
    /// When it was appended (Unix milliseconds).
    pub created_ms: u64,
    pub qos: u8,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Why bytes are not a whole, sound record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Fewer bytes than the header announces: the write was cut short.
    Torn,
    /// A whole record whose checksum or structure is wrong, or which is not the one expected here.
    Corrupt,
}

/// A topic or payload too long for the record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a message of {0} bytes does not fit a spool record")]
pub struct TooLarge(pub usize);

/// The bytes of record `seq`, header included, ready for one write.
pub fn encode(seq: u64, created_ms: u64, qos: u8, topic: &str, payload: &[u8]) -> Result<Vec<u8>, TooLarge> {
    let too_large = TooLarge(topic.len() + payload.len());
    let topic_len = u16::try_from(topic.len()).map_err(|_| too_large)?;
    let body_len = FIXED_BODY_BYTES + topic.len() + payload.len();
    let body_len_u32 = u32::try_from(body_len).map_err(|_| too_large)?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body_len);
    bytes.extend_from_slice(&body_len_u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&created_ms.to_le_bytes());
    bytes.push(qos);
    bytes.extend_from_slice(&topic_len.to_le_bytes());
    bytes.extend_from_slice(topic.as_bytes());
    bytes.extend_from_slice(payload);
    let crc = crc32fast::hash(&bytes[HEADER_BYTES..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// The length of the whole record at the start of `bytes`, if it is sound and is record `expected_seq`.
pub fn check(bytes: &[u8], expected_seq: u64) -> Result<usize, Damage> {
    let body = body(bytes)?;
    match fields(body) {
        Some((seq, ..)) if seq == expected_seq => Ok(HEADER_BYTES + body.len()),
        _ => Err(Damage::Corrupt),
    }
}

/// Decodes the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Record, Damage> {
    let (seq, created_ms, qos, topic, payload) = fields(body(bytes)?).ok_or(Damage::Corrupt)?;
    Ok(Record { seq, created_ms, qos, topic: topic.to_owned(), payload: payload.to_vec() })
}

/// The checksummed body of the record at the start of `bytes`.
fn body(bytes: &[u8]) -> Result<&[u8], Damage> {
    let header = bytes.get(..HEADER_BYTES).ok_or(Damage::Torn)?;
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let body = bytes.get(HEADER_BYTES..HEADER_BYTES + body_len).ok_or(Damage::Torn)?;
    if crc32fast::hash(body) != crc { Err(Damage::Corrupt) } else { Ok(body) }
}

/// seq, created_ms, qos, topic and payload of a body whose checksum matched.
fn fields(body: &[u8]) -> Option<(u64, u64, u8, &str, &[u8])> {
    let (fixed, rest) = body.split_at_checked(FIXED_BODY_BYTES)?;
    let seq = u64::from_le_bytes(fixed[..8].try_into().ok()?);
    let created_ms = u64::from_le_bytes(fixed[8..16].try_into().ok()?);
    let qos = fixed[16];
    let topic_len = usize::from(u16::from_le_bytes([fixed[17], fixed[18]]));
    let (topic, payload) = rest.split_at_checked(topic_len)?;
    Some((seq, created_ms, qos, std::str::from_utf8(topic).ok()?, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode(7, 1_700_000_000_000, 1, "devices/d/predictions/s", b"{\"seq\":7}").expect("fits");
        assert_eq!(check(&bytes, 7), Ok(bytes.len()));
        let record = decode(&bytes).expect("sound");
        assert_eq!(
            record,
            Record {
                seq: 7,
                created_ms: 1_700_000_000_000,
                qos: 1,
                topic: "devices/d/predictions/s".into(),
                payload: b"{\"seq\":7}".to_vec(),
            }
        );
        // Trailing bytes (the next record) are not part of it.
        let mut two = bytes.clone();
        two.extend_from_slice(&encode(8, 0, 0, "t", b"").expect("fits"));
        assert_eq!(check(&two, 7), Ok(bytes.len()));
    }

    #[test]
    fn every_cut_is_torn_and_every_flipped_bit_is_caught() {
        let bytes = encode(3, 42, 1, "t/x", b"payload").expect("fits");
        for cut in 0..bytes.len() {
            assert_eq!(check(&bytes[..cut], 3), Err(Damage::Torn), "cut at {cut}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            // A flipped length bit can make the record look longer than the bytes (torn) or shorter (corrupt).
            assert!(check(&flipped, 3).is_err(), "bit {bit}");
            assert!(decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn a_sound_record_out_of_place_is_corrupt() {
        let bytes = encode(3, 42, 1, "t", b"p").expect("fits");
        assert_eq!(check(&bytes, 4), Err(Damage::Corrupt));
    }

    #[test]
    fn oversized_topics_are_refused() {
        let topic = "t".repeat(usize::from(u16::MAX) + 1);
        assert_eq!(encode(0, 0, 1, &topic, b""), Err(TooLarge(topic.len())));
    }
}
