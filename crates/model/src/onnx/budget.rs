//! What decoding an ONNX file would cost, read from the protobuf wire format before
//! anything is decoded.
//!
//! prost materialises every repeated message and string it meets: two wire bytes (a tag and
//! a zero length) become a `NodeProto` of ~150 bytes, so a file of empty messages decodes
//! to ~100× its size. This walk follows the message fields `proto.rs` decodes, estimates the
//! bytes decoding allocates (each message's struct, each string's header and contents,
//! each packed number widened to 8 bytes) and refuses a file whose estimate passes a bound
//! proportional to its size — before prost allocates any of it.

use std::mem::size_of;

use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// Decoding may allocate at most this many times the file's size (plus [`FLOOR_BYTES`]).
/// Real tree ensembles decode to ~3–8× (packed one-byte varints widen to 8 bytes).
pub const INFLATION_LIMIT: usize = 16;
const FLOOR_BYTES: usize = 1 << 20;
const STRING_HEADER: usize = size_of::<String>();

/// The message types of `proto.rs`, as far as the walk needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    OpsetId,
    ValueInfo,
    Type,
    TypeTensor,
    Shape,
    Dimension,
}

/// What a field of a message holds on the wire, as far as decoded size goes.
enum Field {
    Message(Kind),
    /// A repeated or singular string/bytes field: a header plus the contents.
    Bytes,
    /// A repeated varint-encoded number, 8 bytes decoded (packed or not).
    Varints,
    /// A repeated float or double, as many bytes decoded as on the wire.
    Fixed,
    /// Anything else: decoded in place or skipped.
    Other,
}

impl Kind {
    fn decoded_size(self) -> usize {
        match self {
            Kind::Model => size_of::<ModelProto>(),
            Kind::Graph => size_of::<GraphProto>(),
            Kind::Node => size_of::<NodeProto>(),
            Kind::Attribute => size_of::<AttributeProto>(),
            Kind::Tensor => size_of::<TensorProto>(),
            Kind::OpsetId => size_of::<OperatorSetIdProto>(),
            Kind::ValueInfo => size_of::<ValueInfoProto>(),
            Kind::Type => size_of::<TypeProto>(),
            Kind::TypeTensor => size_of::<TypeProtoTensor>(),
            Kind::Shape => size_of::<TensorShapeProto>(),
            Kind::Dimension => size_of::<Dimension>(),
        }
    }

    /// The field numbers of `proto.rs`.
    fn field(self, tag: u32) -> Field {
        match (self, tag) {
            (Kind::Model, 7) => Field::Message(Kind::Graph),
            (Kind::Model, 8) => Field::Message(Kind::OpsetId),
            (Kind::Model, 2 | 3) => Field::Bytes,
            (Kind::OpsetId, 1) => Field::Bytes,
            (Kind::Graph, 1) => Field::Message(Kind::Node),
            (Kind::Graph, 5) => Field::Message(Kind::Tensor),
            (Kind::Graph, 11 | 12) => Field::Message(Kind::ValueInfo),
            (Kind::Graph, 2) => Field::Bytes,
            (Kind::Node, 5) => Field::Message(Kind::Attribute),
            (Kind::Node, 1 | 2 | 3 | 4 | 7) => Field::Bytes,
            (Kind::Attribute, 5) => Field::Message(Kind::Tensor),
            (Kind::Attribute, 1 | 4 | 9) => Field::Bytes,
            (Kind::Attribute, 8) => Field::Varints,
            (Kind::Attribute, 7) => Field::Fixed,
            (Kind::Tensor, 1 | 7) => Field::Varints,
            (Kind::Tensor, 4 | 10) => Field::Fixed,
            (Kind::Tensor, 8 | 9) => Field::Bytes,
            (Kind::ValueInfo, 2) => Field::Message(Kind::Type),
            (Kind::ValueInfo, 1) => Field::Bytes,
            (Kind::Type, 1) => Field::Message(Kind::TypeTensor),
            (Kind::TypeTensor, 2) => Field::Message(Kind::Shape),
            (Kind::Shape, 1) => Field::Message(Kind::Dimension),
            (Kind::Dimension, 2) => Field::Bytes,
            _ => Field::Other,
        }
    }
}

/// The bytes decoding `bytes` as a `ModelProto` would allocate, at most; `Err` names why the
/// file is refused (over the bound, or not protobuf at all).
pub fn check_decoded_size(bytes: &[u8]) -> Result<usize, String> {
    let limit = bytes
        .len()
        .saturating_mul(INFLATION_LIMIT)
        .saturating_add(FLOOR_BYTES);
    let mut walk = Walk { total: 0, limit };
    walk.message(bytes, Kind::Model)?;
    Ok(walk.total)
}

struct Walk {
    total: usize,
    limit: usize,
}

impl Walk {
    fn add(&mut self, bytes: usize) -> Result<(), String> {
        self.total = self.total.saturating_add(bytes);
        if self.total > self.limit {
            return Err(format!(
                "the ONNX file would decode to more than {} bytes ({INFLATION_LIMIT}× its size): refused before decoding",
                self.limit
            ));
        }
        Ok(())
    }

    fn message(&mut self, mut buf: &[u8], kind: Kind) -> Result<(), String> {
        self.add(kind.decoded_size())?;
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let tag = u32::try_from(key >> 3).map_err(|_| "a field number out of range")?;
            match key & 7 {
                0 => {
                    varint(&mut buf)?;
                    // An unpacked repeated number: one more element.
                    if matches!(kind.field(tag), Field::Varints) {
                        self.add(8)?;
                    }
                }
                1 | 5 => {
                    take(&mut buf, if key & 7 == 1 { 8 } else { 4 })?;
                    if matches!(kind.field(tag), Field::Fixed) {
                        self.add(8)?;
                    }
                }
                2 => {
                    let len = usize::try_from(varint(&mut buf)?)
                        .map_err(|_| "a length out of range".to_string())?;
                    let body = take(&mut buf, len)?;
                    match kind.field(tag) {
                        Field::Message(inner) => self.message(body, inner)?,
                        Field::Bytes => self.add(STRING_HEADER + body.len())?,
                        // Packed varints: one ends at each byte below 0x80.
                        Field::Varints => {
                            let elements = body.iter().filter(|b| **b < 0x80).count();
                            self.add(elements.saturating_mul(8))?
                        }
                        Field::Fixed => self.add(body.len())?,
                        Field::Other => {}
                    }
                }
                other => return Err(format!("protobuf wire type {other} is not supported")),
            }
        }
        Ok(())
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf
            .split_first()
            .ok_or_else(|| "a truncated varint".to_string())?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("a varint longer than 10 bytes".into())
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if len > buf.len() {
        return Err("a field runs past the end of its message".into());
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn node_with_attributes(n: usize) -> NodeProto {
        NodeProto {
            op_type: "TreeEnsembleRegressor".into(),
            attribute: (0..n)
                .map(|i| AttributeProto {
                    name: format!("a{i}"),
                    ints: vec![1, 2, 300],
                    floats: vec![0.5; 4],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn model(nodes: Vec<NodeProto>) -> Vec<u8> {
        ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn an_ordinary_model_is_estimated_at_or_above_what_decoding_holds() {
        let bytes = model(vec![node_with_attributes(5)]);
        let estimate = check_decoded_size(&bytes).unwrap();
        let lower = size_of::<ModelProto>()
            + size_of::<GraphProto>()
            + size_of::<NodeProto>()
            + 5 * size_of::<AttributeProto>()
            + 5 * (3 + 4) * 8;
        assert!(estimate >= lower, "{estimate} < {lower}");
    }

    #[test]
    fn empty_repeated_messages_are_refused_before_decoding() {
        // Graph field 1 (node), length 0, repeated: two bytes per ~150-byte NodeProto.
        let mut graph = Vec::new();
        for _ in 0..200_000 {
            graph.extend_from_slice(&[0x0a, 0x00]);
        }
        let mut bytes = vec![0x3a];
        let mut len = graph.len();
        while len >= 0x80 {
            bytes.push((len as u8) | 0x80);
            len >>= 7;
        }
        bytes.push(len as u8);
        bytes.extend_from_slice(&graph);
        let err = check_decoded_size(&bytes).unwrap_err();
        assert!(err.contains("refused before decoding"), "{err}");
        // The same count of empty messages inside the floor is accepted.
        let small = model(vec![NodeProto::default(); 100]);
        assert!(check_decoded_size(&small).is_ok());
    }

    #[test]
    fn empty_strings_and_attributes_count_too() {
        let node = NodeProto {
            input: vec![String::new(); 400_000],
            ..Default::default()
        };
        // 12× their wire size: counted, and inside the bound.
        let estimate = check_decoded_size(&model(vec![node])).unwrap();
        assert!(estimate >= 400_000 * STRING_HEADER, "{estimate}");
        let node = NodeProto {
            attribute: vec![AttributeProto::default(); 400_000],
            ..Default::default()
        };
        assert!(check_decoded_size(&model(vec![node])).is_err());
    }

    #[test]
    fn truncated_and_malformed_wire_data_are_errors() {
        let bytes = model(vec![node_with_attributes(2)]);
        assert!(check_decoded_size(&bytes[..bytes.len() - 3]).is_err());
        assert!(check_decoded_size(&[0x3a, 0xff]).is_err());
        assert!(check_decoded_size(&[0x3f]).is_err());
        assert!(check_decoded_size(&[0xff; 12]).is_err());
    }
}
