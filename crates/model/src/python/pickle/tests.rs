use super::*;

#[test]
fn objects_are_capped_by_the_file_size() {
    // PROTO 2, then "push None, pop" a million times: two bytes per ~100-byte object.
    let mut bomb = vec![0x80, 2];
    bomb.extend(b"N0".repeat(1_000_000));
    bomb.extend(b"N.");
    let e = read_pickle(&bomb).unwrap_err().to_string();
    assert!(
        e.contains("makes more than 125000 objects, more than its size allows"),
        "{e}"
    );
    // Small pickles keep a floor of 1,024 objects.
    let mut small = vec![0x80, 2];
    small.extend(b"N0".repeat(500));
    small.extend(b"N.");
    assert!(read_pickle(&small).is_ok());
}

/// `pickle.dumps({"a": [1, 2.5, "x"], "b": (True, None)}, protocol=2)`
const SIMPLE: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x03eX\x01\x00\x00\x00bq\x04\x88N\x86q\x05u.";

#[test]
fn plain_containers_are_read_as_data() {
    let (objects, root) = read_pickle(SIMPLE).unwrap();
    let entries = objects.dict_entries(root).unwrap();
    let a = objects.items(entries["a"]).unwrap();
    assert_eq!(objects.as_i64(a[0]), Some(1));
    assert_eq!(objects.as_f64(a[1]), Some(2.5));
    assert_eq!(objects.as_str(a[2]), Some("x"));
    let b = objects.items(entries["b"]).unwrap();
    assert_eq!(objects.as_bool(b[0]), Some(true));
    assert!(objects.is_none(b[1]));
}

#[test]
fn a_global_off_the_allow_list_is_refused_by_name() {
    // pickle.dumps of an object whose __reduce__ is (os.system, ("touch /tmp/x",)), protocol 2
    let hostile =
        b"\x80\x02cposix\nsystem\nq\x00X\x0b\x00\x00\x00touch /tmp/xq\x01\x85q\x02Rq\x03.";
    let err = read_pickle(hostile).unwrap_err().to_string();
    assert!(err.contains("posix.system"), "{err}");
    assert!(err.contains("allow-list"), "{err}");
}

#[test]
fn truncated_and_oversized_lengths_fail_without_allocating() {
    let err = read_pickle(&SIMPLE[..SIMPLE.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    // BINBYTES8 claiming 2^60 bytes.
    let mut huge = b"\x80\x04\x8e".to_vec();
    huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
    huge.extend_from_slice(b"abc.");
    let err = read_pickle(&huge).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    assert!(read_pickle(b"").is_err());
    assert!(read_pickle(b"\x80\x02.").is_err(), "STOP on an empty stack");
    assert!(
        read_pickle(b"\x80\x02h\x07.")
            .unwrap_err()
            .to_string()
            .contains("memo entry 7")
    );
}

#[test]
fn compressed_joblib_files_are_refused_with_the_fix() {
    let err = read_pickle(&[0x78, 0x9c, 1, 2, 3]).unwrap_err().to_string();
    assert!(err.contains("compress=0"), "{err}");
}

#[test]
fn big_and_negative_longs_decode() {
    assert_eq!(long_from_bytes(&[0xff]), Obj::Int(-1));
    assert_eq!(long_from_bytes(&[0x00, 0x01]), Obj::Int(256));
    assert_eq!(long_from_bytes(&[0; 9]), Obj::BigInt);
}
