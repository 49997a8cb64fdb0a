//! Framing and (de)coding: a Kafka frame is a big-endian `i32` size and
//! that many bytes. A frame larger than `max_frame_bytes`, a negative
//! size, or a frame that does not decode is a [`FrameError`]: the server
//! closes that connection. A frame's buffer grows with the bytes that
//! arrive (at most twice them, plus 16 KiB): the size prefix is a claim,
//! not a reservation.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Smallest request header: api key, api version, correlation id.
const MIN_HEADER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds max_frame_bytes ({max})")]
    Oversize { size: i64, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of API {key:?}")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The first read of a frame body reserves at most this much; after that
/// the buffer at most doubles with what has arrived, so a client claiming
/// a large frame and sending little costs little.
const FIRST_READ: usize = 16 * 1024;

/// Reads one frame; `None` at a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = read_size(reader, max).await? else {
        return Ok(None);
    };
    read_body(reader, size, &mut BytesMut::new())
        .await
        .map(Some)
}

/// Reads a frame's size prefix, checked against `max`; `None` at a clean
/// end of stream between frames.
pub async fn read_size<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    let Ok(size) = usize::try_from(size) else {
        return Err(FrameError::Negative(size));
    };
    if size > max {
        return Err(FrameError::Oversize {
            size: size as i64,
            max,
        });
    }
    Ok(Some(size))
}

/// Reads a frame body of `size` bytes into `buf` (emptied first; its
/// spare capacity is reused) and hands it out. The buffer grows with the
/// bytes that arrive, never by the size the client claims.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
    buf: &mut BytesMut,
) -> Result<Bytes, FrameError> {
    buf.clear();
    while buf.len() < size {
        let missing = size - buf.len();
        if buf.capacity() == buf.len() {
            buf.reserve(missing.min(buf.len().max(FIRST_READ)));
        }
        let read = (&mut *reader).take(missing as u64).read_buf(buf).await?;
        if read == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(buf.split().freeze())
}

/// A decoded request. `body` is `None` for an ApiVersions request of a
/// version we do not know: Kafka answers those with UNSUPPORTED_VERSION.
pub struct Request {
    pub key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Option<RequestKind>,
}

/// Decodes a frame into header and body, checking the API key and version
/// against what this broker implements (`supported`).
pub fn decode_request(
    mut frame: Bytes,
    supported: impl Fn(ApiKey) -> Option<(i16, i16)>,
) -> Result<Request, FrameError> {
    if frame.len() < MIN_HEADER {
        return Err(FrameError::Malformed(format!(
            "{} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|()| FrameError::UnknownApiKey(raw_key))?;
    let Some((min, max)) = supported(key) else {
        return Err(FrameError::UnknownApiKey(raw_key));
    };
    let known = (min..=max).contains(&version);
    if !known && key != ApiKey::ApiVersions {
        return Err(FrameError::UnsupportedVersion { key, version });
    }
    if !known {
        // An ApiVersions request newer than ours: only the fixed part of
        // its header is needed to answer UNSUPPORTED_VERSION.
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let header = RequestHeader::default()
            .with_request_api_key(raw_key)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id);
        return Ok(Request {
            key,
            version,
            header,
            body: None,
        });
    }
    let header_version = key.request_header_version(version);
    // The decoder returns errors for short input; the unwind guard is
    // belt and braces so that no frame can take the broker down.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut frame, header_version)?;
        let body = RequestKind::decode(key, &mut frame, version)?;
        anyhow::Ok((header, body))
    }));
    match decoded {
        Ok(Ok((header, body))) => Ok(Request {
            key,
            version,
            header,
            body: Some(body),
        }),
        Ok(Err(e)) => Err(FrameError::Malformed(format!("{key:?} v{version}: {e}"))),
        Err(_) => Err(FrameError::Malformed(format!(
            "{key:?} v{version}: the decoder panicked"
        ))),
    }
}

/// Encodes a response frame (size prefix included) for a request of
/// `key` at `version`.
pub fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, key.response_header_version(version))?;
    body.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;
    use tokio::io::AsyncWriteExt;

    fn all(_: ApiKey) -> Option<(i16, i16)> {
        Some((0, 4))
    }

    fn frame(key: i16, version: i16, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(7);
        b.put_i16(-1); // null client id
        b.put_slice(body);
        b.freeze()
    }

    #[tokio::test]
    async fn frames_are_bounded() {
        let mut input: &[u8] = &[0, 0, 0, 3, 1, 2, 3, 0, 0, 1, 0];
        assert_eq!(
            read_frame(&mut input, 100).await.unwrap().unwrap().as_ref(),
            &[1, 2, 3]
        );
        assert!(matches!(
            read_frame(&mut input, 100).await,
            Err(FrameError::Oversize { size: 256, .. })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut negative, 100).await,
            Err(FrameError::Negative(-1))
        ));
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 100).await.unwrap().is_none());
        let mut truncated: &[u8] = &[0, 0, 0, 9, 1];
        assert!(matches!(
            read_frame(&mut truncated, 100).await,
            Err(FrameError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_claimed_size_reserves_nothing_until_the_bytes_arrive() {
        let claimed = 100 * 1024 * 1024;
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client
            .write_all(&(claimed as i32).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[7u8; 1000]).await.unwrap();
        let size = read_size(&mut server, claimed).await.unwrap().unwrap();
        assert_eq!(size, claimed);
        let mut buf = BytesMut::new();
        // The client sends no more: the read waits, holding what arrived.
        let read = read_body(&mut server, size, &mut buf);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), read).await;
        assert!(waited.is_err(), "the frame is not complete");
        assert_eq!(buf.len(), 1000);
        assert!(
            buf.capacity() <= 64 * 1024,
            "{} bytes reserved for 1000 that arrived",
            buf.capacity()
        );
        // A frame that does arrive in full is read whole, in many reads.
        let (mut client, mut server) = tokio::io::duplex(4096);
        let body: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let sent = body.clone();
        let writer = tokio::spawn(async move { client.write_all(&sent).await });
        let frame = read_body(&mut server, body.len(), &mut buf).await.unwrap();
        assert_eq!(frame.as_ref(), &body[..]);
        writer.await.unwrap().unwrap();
        assert!(buf.is_empty(), "handed out");
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 18]), all),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(frame(9999, 0, &[]), all),
            Err(FrameError::UnknownApiKey(9999))
        ));
        assert!(matches!(
            decode_request(frame(3, 99, &[]), all),
            Err(FrameError::UnsupportedVersion { .. })
        ));
        // Metadata v1 whose topic array claims more entries than it holds.
        assert!(matches!(
            decode_request(frame(3, 1, &[0, 0, 0, 5, 0, 3]), all),
            Err(FrameError::Malformed(_))
        ));
        // ApiVersions of an unknown version: header only, no body.
        let r = decode_request(frame(18, 99, &[]), all).unwrap();
        assert!(r.body.is_none());
        assert_eq!(r.header.correlation_id, 7);
        let mut ok = BytesMut::new();
        ApiVersionsRequest::default().encode(&mut ok, 0).unwrap();
        let r = decode_request(frame(18, 0, &ok), all).unwrap();
        assert!(matches!(r.body, Some(RequestKind::ApiVersions(_))));
    }
}
