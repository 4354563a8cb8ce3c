use super::*;

#[test]
fn type_strings_parse_with_their_byte_order() {
    assert_eq!(
        Dtype::parse("<f8", None).unwrap(),
        Dtype::Scalar {
            kind: ScalarKind::Float,
            size: 8,
            big_endian: false
        }
    );
    assert_eq!(
        Dtype::parse("i4", Some('>')).unwrap(),
        Dtype::Scalar {
            kind: ScalarKind::Int,
            size: 4,
            big_endian: true
        }
    );
    assert!(Dtype::parse("<c16", None).is_err());
    assert!(Dtype::parse("<f3", None).is_err());
}

#[test]
fn a_declared_shape_must_match_the_bytes_present() {
    let f8 = Dtype::parse("<f8", None).unwrap();
    let err = NdArray::new(
        f8.clone(),
        vec![1 << 40, 1 << 20],
        false,
        ArrayData::Bytes(vec![0; 16]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs"), "{err}");
    let err = NdArray::new(
        f8.clone(),
        vec![usize::MAX, 3],
        false,
        ArrayData::Bytes(vec![]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("overflows"), "{err}");
    let ok = NdArray::new(
        f8,
        vec![2],
        false,
        ArrayData::Bytes(
            [1.5f64, -2.0]
                .iter()
                .flat_map(|f| f.to_le_bytes())
                .collect(),
        ),
    )
    .unwrap();
    assert_eq!(ok.to_f64().unwrap(), vec![1.5, -2.0]);
}

#[test]
fn fortran_order_is_read_back_in_c_order() {
    let i1 = Dtype::parse("|i1", None).unwrap();
    // [[1, 2, 3], [4, 5, 6]] stored column-major.
    let a = NdArray::new(
        i1,
        vec![2, 3],
        true,
        ArrayData::Bytes(vec![1, 4, 2, 5, 3, 6]),
    )
    .unwrap();
    assert_eq!(a.to_i64().unwrap(), vec![1, 2, 3, 4, 5, 6]);
}
