//! Request bodies as the client encoded them: `Content-Encoding: gzip` and `deflate`
//! decoded while they stream in, the size limit applied to what they inflate to. A body
//! is refused with `413` the moment its decoded bytes pass the limit, so a bomb costs at
//! most the limit plus one decoder buffer, never what it would inflate to.

use std::io::{self, Write};

use actix_web::http::header::{CONTENT_ENCODING, HeaderMap};
use actix_web::web;
use flate2::write::{DeflateDecoder, GzDecoder, ZlibDecoder};
use futures::StreamExt;

use crate::error::ApiError;

/// The encodings a body may arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
}

/// What the `Content-Encoding` header says, or `415` naming an encoding not decoded here.
pub fn coding(headers: &HeaderMap) -> Result<Coding, ApiError> {
    let mut codings = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| {
            ApiError::UnsupportedMediaType("the Content-Encoding header is not text".into())
        })?;
        codings.extend(
            text.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty() && c != "identity"),
        );
    }
    match codings.as_slice() {
        [] => Ok(Coding::Identity),
        [one] if one == "gzip" || one == "x-gzip" => Ok(Coding::Gzip),
        [one] if one == "deflate" => Ok(Coding::Deflate),
        [one] => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {one:?} is not supported (gzip, deflate or none)"
        ))),
        many => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {:?} applies several encodings; send at most one (gzip, deflate)",
            many.join(", ")
        ))),
    }
}

/// The whole body, decoded; `413` as soon as the raw or the decoded bytes pass `limit`,
/// `400` when the encoded data is corrupt, `415` for an encoding not decoded here.
pub async fn read_decoded(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the body is larger than the limit of {limit} bytes"
        ))
    };
    let coding = coding(headers)?;
    if coding == Coding::Identity {
        return payload
            .to_bytes_limited(limit)
            .await
            .map_err(|_| too_large())?
            .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")));
    }
    let mut decoder = Decoder::new(coding, limit);
    let mut raw = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        raw += chunk.len();
        if raw > limit {
            return Err(too_large());
        }
        decoder.write(&chunk).map_err(|e| decoder.error(e, limit))?;
    }
    decoder
        .finish()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A `Vec` that refuses to grow past `limit` (the decoder stops at the first refusal).
struct Bounded {
    out: Vec<u8>,
    limit: usize,
}

/// The error [`Bounded`] answers past its limit, told apart from corrupt data.
#[derive(Debug, thiserror::Error)]
#[error("the decoded body is larger than the limit")]
struct OverLimit;

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(io::Error::other(OverLimit));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A streaming decoder for one coding, writing into a [`Bounded`] buffer.
enum Decoder {
    Gzip(GzDecoder<Bounded>),
    /// HTTP's `deflate` is a zlib stream; some clients send raw deflate. Which one is
    /// known from the first two bytes.
    Deflate {
        limit: usize,
        pending: Vec<u8>,
        inner: Option<Inflate>,
    },
}

enum Inflate {
    Zlib(ZlibDecoder<Bounded>),
    Raw(DeflateDecoder<Bounded>),
}

impl Inflate {
    fn write_all(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self {
            Inflate::Zlib(d) => d.write_all(chunk),
            Inflate::Raw(d) => d.write_all(chunk),
        }
    }
}

impl Decoder {
    fn new(coding: Coding, limit: usize) -> Decoder {
        let sink = Bounded {
            out: Vec::new(),
            limit,
        };
        match coding {
            Coding::Gzip => Decoder::Gzip(GzDecoder::new(sink)),
            _ => Decoder::Deflate {
                limit,
                pending: Vec::new(),
                inner: None,
            },
        }
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.write_all(chunk),
            Decoder::Deflate {
                limit,
                pending,
                inner,
            } => {
                if inner.is_none() {
                    pending.extend_from_slice(chunk);
                    if pending.len() < 2 {
                        return Ok(());
                    }
                    let sink = Bounded {
                        out: Vec::new(),
                        limit: *limit,
                    };
                    let header = u16::from_be_bytes([pending[0], pending[1]]);
                    let zlib = pending[0] & 0x0f == 8 && header % 31 == 0;
                    let mut d = if zlib {
                        Inflate::Zlib(ZlibDecoder::new(sink))
                    } else {
                        Inflate::Raw(DeflateDecoder::new(sink))
                    };
                    let first = std::mem::take(pending);
                    d.write_all(&first)?;
                    *inner = Some(d);
                    return Ok(());
                }
                match inner {
                    Some(d) => d.write_all(chunk),
                    None => Ok(()),
                }
            }
        }
    }

    /// `413` when the limit stopped decoding, else `400` naming the corruption.
    fn error(&self, e: io::Error, limit: usize) -> ApiError {
        if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
            return ApiError::PayloadTooLarge(format!(
                "the body inflates past the limit of {limit} bytes"
            ));
        }
        let name = match self {
            Decoder::Gzip(_) => "gzip",
            Decoder::Deflate { .. } => "deflate",
        };
        ApiError::BadRequest(format!("the {name} body cannot be decoded: {e}"))
    }

    fn finish(self) -> Result<web::Bytes, ApiError> {
        let corrupt = |name: &str, e: io::Error| {
            ApiError::BadRequest(format!("the {name} body cannot be decoded: {e}"))
        };
        let sink = match self {
            Decoder::Gzip(d) => d.finish().map_err(|e| corrupt("gzip", e))?,
            Decoder::Deflate { inner: None, .. } => {
                return Err(ApiError::BadRequest(
                    "the deflate body cannot be decoded: it ends before its header".into(),
                ));
            }
            Decoder::Deflate {
                inner: Some(Inflate::Zlib(d)),
                ..
            } => d.finish().map_err(|e| corrupt("deflate", e))?,
            Decoder::Deflate {
                inner: Some(Inflate::Raw(d)),
                ..
            } => d.finish().map_err(|e| corrupt("deflate", e))?,
        };
        Ok(web::Bytes::from(sink.out))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CONTENT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_header_names_one_supported_encoding_or_is_refused_by_name() {
        assert_eq!(coding(&headers(&[])).unwrap(), Coding::Identity);
        assert_eq!(coding(&headers(&["identity"])).unwrap(), Coding::Identity);
        assert_eq!(coding(&headers(&["GZip"])).unwrap(), Coding::Gzip);
        assert_eq!(coding(&headers(&["x-gzip"])).unwrap(), Coding::Gzip);
        assert_eq!(coding(&headers(&["deflate"])).unwrap(), Coding::Deflate);
        let err = coding(&headers(&["br"])).unwrap_err().to_string();
        assert!(err.contains("\"br\" is not supported"), "{err}");
        let err = coding(&headers(&["gzip", "gzip"])).unwrap_err().to_string();
        assert!(err.contains("several"), "{err}");
    }

    fn decode(coding: Coding, parts: &[&[u8]], limit: usize) -> Result<Vec<u8>, ApiError> {
        let mut d = Decoder::new(coding, limit);
        for p in parts {
            d.write(p).map_err(|e| d.error(e, limit))?;
        }
        d.finish().map(|b| b.to_vec())
    }

    fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
        let level = flate2::Compression::best();
        match coding {
            "gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "zlib" => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            _ => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
        }
    }

    #[test]
    fn gzip_zlib_and_raw_deflate_decode_across_chunk_boundaries() {
        let data = br#"{"instances": [[1, 2, 3]]}"#.repeat(50);
        for (name, coding) in [
            ("gzip", Coding::Gzip),
            ("zlib", Coding::Deflate),
            ("raw", Coding::Deflate),
        ] {
            let wire = compress(name, &data);
            let parts: Vec<&[u8]> = wire.chunks(1).collect();
            assert_eq!(decode(coding, &parts, 1 << 20).unwrap(), data, "{name}");
            assert_eq!(decode(coding, &[&wire], 1 << 20).unwrap(), data, "{name}");
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_corrupt_data_is_a_bad_request() {
        let bomb = compress("gzip", &vec![b' '; 16 << 20]);
        assert!(bomb.len() < 32 << 10, "{}", bomb.len());
        let err = decode(Coding::Gzip, &[&bomb], 1 << 20).unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge(_)), "{err}");
        assert!(err.to_string().contains("inflates past"), "{err}");
        let mut wire = compress("gzip", b"{}");
        let last = wire.len() - 5;
        wire[last] ^= 0xff;
        let err = decode(Coding::Gzip, &[&wire], 1 << 20).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
        let err = decode(Coding::Gzip, &[b"plain text, not gzip"], 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("gzip body cannot be decoded"),
            "{err}"
        );
        let mut trailing = compress("gzip", b"{}");
        trailing.extend_from_slice(b"more after the end");
        let err = decode(Coding::Gzip, &[&trailing], 1 << 20).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
        let err = decode(Coding::Deflate, &[b"x"], 1 << 20).unwrap_err();
        assert!(err.to_string().contains("deflate"), "{err}");
    }
}
