//! Checks on the record batches a producer sends, before they are
//! replicated: record batch v2 (magic 2) framing and its CRC-32C.

use crate::partition_log::BATCH_HEADER_LEN;
use kafka_protocol::ResponseError;

const LENGTH: usize = 8;
const MAGIC: usize = 16;
const CRC: usize = 17;
/// The CRC covers everything from the attributes field on.
const CRC_FROM: usize = 21;

/// Why a produced record set is refused, as a Kafka error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: ResponseError,
    pub message: String,
}

fn refuse(error: ResponseError, message: String) -> Refused {
    Refused { error, message }
}

/// Checks that `records` is exactly one well-formed v2 batch with a
/// correct CRC (Kafka requires exactly one batch per partition).
pub fn check_single_batch(records: &[u8]) -> Result<(), Refused> {
    let batches = split(records)?;
    if batches != 1 {
        return Err(refuse(
            ResponseError::InvalidRecord,
            format!(
                "a produce request must carry exactly one record batch per partition, got {batches}"
            ),
        ));
    }
    Ok(())
}

/// Validates every batch in `records` and returns how many there are.
pub fn split(mut records: &[u8]) -> Result<usize, Refused> {
    let mut count = 0;
    while !records.is_empty() {
        if records.len() < BATCH_HEADER_LEN {
            return Err(refuse(
                ResponseError::CorruptMessage,
                format!("record batch truncated at {} bytes", records.len()),
            ));
        }
        let length = i32::from_be_bytes(records[LENGTH..LENGTH + 4].try_into().expect("4 bytes"));
        let total = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(12))
            .filter(|t| (BATCH_HEADER_LEN..=records.len()).contains(t))
            .ok_or_else(|| {
                refuse(
                    ResponseError::CorruptMessage,
                    format!(
                        "record batch length {length} does not fit the {} bytes sent",
                        records.len()
                    ),
                )
            })?;
        let magic = records[MAGIC];
        if magic != 2 {
            return Err(refuse(
                ResponseError::UnsupportedForMessageFormat,
                format!("record batch magic {magic}: only v2 batches are accepted"),
            ));
        }
        let stored = u32::from_be_bytes(records[CRC..CRC + 4].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&records[CRC_FROM..total]);
        if stored != computed {
            return Err(refuse(
                ResponseError::CorruptMessage,
                format!(
                    "record batch CRC {stored:#010x} does not match its content ({computed:#010x})"
                ),
            ));
        }
        records = &records[total..];
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal v2 batch of `records` (empty) records with a valid CRC.
    pub(crate) fn batch(records: i32) -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEADER_LEN];
        let len = (b.len() - 12) as i32;
        b[LENGTH..LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b[MAGIC] = 2;
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_FROM..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn crc_length_magic_and_count_are_checked() {
        let good = batch(3);
        assert_eq!(check_single_batch(&good), Ok(()));
        let mut bad = good.clone();
        bad[40] ^= 1;
        assert_eq!(
            check_single_batch(&bad).unwrap_err().error,
            ResponseError::CorruptMessage
        );
        let two = [good.clone(), good.clone()].concat();
        assert_eq!(
            check_single_batch(&two).unwrap_err().error,
            ResponseError::InvalidRecord
        );
        assert_eq!(
            check_single_batch(&good[..30]).unwrap_err().error,
            ResponseError::CorruptMessage
        );
        let mut long = good.clone();
        long[LENGTH..LENGTH + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(
            check_single_batch(&long).unwrap_err().error,
            ResponseError::CorruptMessage
        );
        let mut old = good;
        old[MAGIC] = 1;
        assert_eq!(
            check_single_batch(&old).unwrap_err().error,
            ResponseError::UnsupportedForMessageFormat
        );
        assert_eq!(
            check_single_batch(&[]).unwrap_err().error,
            ResponseError::InvalidRecord
        );
    }
}
