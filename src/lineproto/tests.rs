//! Tests for the line-protocol parser and encoder: table tests for every rule of
//! InfluxDB 1.x line protocol, and property tests (round trip, never panics).

use super::*;
use crate::base::hash::fnv1a64;
use bytes::Bytes;
use proptest::prelude::*;

/// The default time given to points without a timestamp in these tests.
const DEFAULT_TS: i64 = 1_234_567;

fn parse_str(s: &str) -> ParsedBody {
    parse(Bytes::from(s.to_owned()), Precision::Nanosecond, DEFAULT_TS)
}

fn parse_prec(s: &str, precision: Precision) -> ParsedBody {
    parse(Bytes::from(s.to_owned()), precision, DEFAULT_TS)
}

/// Parses a body that must hold exactly one valid point and no errors.
fn one(s: &str) -> OwnedPoint {
    let body = parse_str(s);
    assert!(
        body.errors.is_empty(),
        "{s:?}: unexpected errors {:?}",
        body.errors
    );
    assert_eq!(body.points.len(), 1, "{s:?}: expected one point");
    body.to_owned_point(&body.points[0])
}

/// Parses a body that must hold exactly one bad line and no points.
fn one_err(s: &str) -> LineError {
    let body = parse_str(s);
    assert!(
        body.points.is_empty(),
        "{s:?}: expected no points, got {:?}",
        body.points
            .iter()
            .map(|p| body.to_owned_point(p))
            .collect::<Vec<_>>()
    );
    assert_eq!(body.errors.len(), 1, "{s:?}: expected one error");
    body.errors[0].clone()
}

/// The single field value of a one-point, one-field line.
fn value_of(s: &str) -> OwnedValue {
    let p = one(s);
    assert_eq!(p.fields.len(), 1, "{s:?}");
    p.fields[0].1.clone()
}

/// The canonical series key and hash of a one-point body.
fn key_of(s: &str) -> (Vec<u8>, u64) {
    let body = parse_str(s);
    assert!(body.errors.is_empty(), "{s:?}: {:?}", body.errors);
    assert_eq!(body.points.len(), 1, "{s:?}");
    let p = &body.points[0];
    (body.series_key(p).to_vec(), body.series_hash(p))
}

/// Whether an error reason is the expected one. `want` lists alternatives separated by
/// `|` (where our wording and InfluxDB's still differ, either is accepted); a trailing
/// `*` matches a prefix.
fn reason_matches(actual: &str, want: &str) -> bool {
    want.split('|').any(|w| match w.strip_suffix('*') {
        Some(prefix) => actual.starts_with(prefix),
        None => actual == w,
    })
}

fn int_range_error(digits: &str) -> String {
    format!(
        "unable to parse integer {digits}: strconv.ParseInt: parsing \"{digits}\": value out of range"
    )
}

fn uint_range_error(digits: &str) -> String {
    format!(
        "unable to parse unsigned {digits}: strconv.ParseUint: parsing \"{digits}\": value out of range"
    )
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn point(
    measurement: &str,
    tags: &[(&str, &str)],
    fields: &[(&str, OwnedValue)],
    timestamp: i64,
) -> OwnedPoint {
    OwnedPoint {
        measurement: b(measurement),
        tags: tags.iter().map(|(k, v)| (b(k), b(v))).collect(),
        fields: fields.iter().map(|(k, v)| (b(k), v.clone())).collect(),
        timestamp: Some(timestamp),
    }
}

fn s(v: &str) -> OwnedValue {
    OwnedValue::String(b(v))
}

// ---------------------------------------------------------------------------------
// Basic shape
// ---------------------------------------------------------------------------------

#[test]
fn full_line_with_all_parts() {
    let body = parse_str("cpu,host=a,region=west usage=0.5,count=3i,up=true,name=\"x\" 1000");
    assert!(body.errors.is_empty());
    assert_eq!(body.points.len(), 1);
    let p = &body.points[0];
    assert_eq!(p.line_number, 1);
    assert!(p.has_timestamp);
    assert_eq!(p.timestamp, 1000);
    assert_eq!(body.bytes(&p.measurement), b"cpu");
    assert_eq!(
        body.line(p),
        b"cpu,host=a,region=west usage=0.5,count=3i,up=true,name=\"x\" 1000"
    );
    assert_eq!(body.series_key(p), b"cpu,host=a,region=west");
    assert_eq!(body.series_hash(p), fnv1a64(b"cpu,host=a,region=west"));
    assert_eq!(p.key_hash, key_hash(b"cpu,host=a,region=west"));
    // Already canonical: the key is a slice of the body.
    assert!(matches!(p.series_key, KeyLoc::Body(_)));
    let tags: Vec<_> = body
        .point_tags(p)
        .iter()
        .map(|t| (body.bytes(&t.key).to_vec(), body.bytes(&t.value).to_vec()))
        .collect();
    assert_eq!(tags, vec![(b("host"), b("a")), (b("region"), b("west"))]);
    let types: Vec<_> = body
        .point_fields(p)
        .iter()
        .map(|f| f.value.field_type())
        .collect();
    assert_eq!(
        types,
        vec![
            FieldType::Float,
            FieldType::Integer,
            FieldType::Boolean,
            FieldType::String
        ]
    );
    assert_eq!(
        body.to_owned_point(p),
        point(
            "cpu",
            &[("host", "a"), ("region", "west")],
            &[
                ("usage", OwnedValue::Float(0.5)),
                ("count", OwnedValue::Integer(3)),
                ("up", OwnedValue::Boolean(true)),
                ("name", s("x")),
            ],
            1000
        )
    );
    // Zero-copy slices share the body's bytes.
    assert_eq!(&body.slice(&p.measurement)[..], b"cpu");
}

#[test]
fn no_tags_and_no_timestamp() {
    let body = parse_str("mem free=1");
    assert!(body.errors.is_empty());
    let p = &body.points[0];
    assert!(!p.has_timestamp);
    assert_eq!(p.timestamp, DEFAULT_TS);
    assert_eq!(body.series_key(p), b"mem");
    assert_eq!(body.point_tags(p).len(), 0);
    assert_eq!(
        body.to_owned_point(p),
        point("mem", &[], &[("free", OwnedValue::Float(1.0))], DEFAULT_TS)
    );
}

#[test]
fn empty_and_whitespace_only_bodies() {
    for text in ["", "\n", "\n\n\n", "   ", " \t \n\t\n", "\r\n", "\r\n\r\n"] {
        let body = parse_str(text);
        assert!(body.points.is_empty(), "{text:?}");
        assert!(body.errors.is_empty(), "{text:?}");
    }
}

#[test]
fn multiple_spaces_between_sections() {
    let p = one("cpu,t=a   f=1   99");
    assert_eq!(
        p,
        point("cpu", &[("t", "a")], &[("f", OwnedValue::Float(1.0))], 99)
    );
    // Trailing whitespace after the timestamp is allowed.
    let p = one("cpu f=1 99   ");
    assert_eq!(p.timestamp, Some(99));
}

// ---------------------------------------------------------------------------------
// Escaping
// ---------------------------------------------------------------------------------

/// (line, measurement, tags, field key)
type NameCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn escaping_in_names() {
    let cases: &[NameCase] = &[
        // commas
        (
            r"cp\,u,ta\,g=va\,l f\,k=1",
            "cp,u",
            &[("ta,g", "va,l")],
            "f,k",
        ),
        // spaces
        (
            r"cpu\ load,my\ tag=my\ value my\ field=1",
            "cpu load",
            &[("my tag", "my value")],
            "my field",
        ),
        // equals: escaped in measurement, tag key, tag value and field key
        (
            r"cp\=u,k\=ey=v\=al f\=k=1",
            "cp=u",
            &[("k=ey", "v=al")],
            "f=k",
        ),
        // an unescaped equals sign is fine in a measurement
        ("cp=u,k=v f=1", "cp=u", &[("k", "v")], "f"),
        // all three at once
        (
            r"a\ b\,c,d\ e\,f\=g=h\ i\,j\=k l\ m\,n\=o=1",
            "a b,c",
            &[("d e,f=g", "h i,j=k")],
            "l m,n=o",
        ),
        // escaped characters at the edges of names
        (
            r"\ m\ ,\,k\,=\=v\= \=f\ =1",
            " m ",
            &[(",k,", "=v=")],
            "=f ",
        ),
        // a backslash before any other byte is kept as written
        (r"c\pu,t\x=v\y f\z=1", r"c\pu", &[(r"t\x", r"v\y")], r"f\z"),
        (r"c\\pu,t=v\\ f=1", r"c\\pu", &[("t", r"v\\")], "f"),
        // quotes are ordinary in names
        (
            r#"c"p"u,t"k=t"v f"k=1"#,
            r#"c"p"u"#,
            &[(r#"t"k"#, r#"t"v"#)],
            r#"f"k"#,
        ),
        // '#' is only a comment at the start of a line
        ("cpu#1,t=#v f#=1", "cpu#1", &[("t", "#v")], "f#"),
        // UTF-8 names
        ("温度,地点=東京 値=1", "温度", &[("地点", "東京")], "値"),
    ];
    for (line, m, tags, fk) in cases {
        let p = one(line);
        assert_eq!(p.measurement, b(m), "{line}");
        let want_tags: Vec<_> = tags.iter().map(|(k, v)| (b(k), b(v))).collect();
        assert_eq!(p.tags, want_tags, "{line}");
        assert_eq!(p.fields, vec![(b(fk), OwnedValue::Float(1.0))], "{line}");
    }
}

#[test]
fn escaped_names_keep_raw_spans() {
    let body = parse_str(r"cp\,u,ta\ g=v\=l f\ k=1");
    let p = &body.points[0];
    assert_eq!(body.bytes(&p.measurement), br"cp\,u");
    let t = &body.point_tags(p)[0];
    assert_eq!(body.bytes(&t.key), br"ta\ g");
    assert_eq!(body.bytes(&t.value), br"v\=l");
    assert_eq!(body.bytes(&body.point_fields(p)[0].key), br"f\ k");
    assert_eq!(unescape(br"a\,b\ c\=d\e"), b(r"a,b c=d\e"));
}

// ---------------------------------------------------------------------------------
// String fields
// ---------------------------------------------------------------------------------

#[test]
fn string_fields() {
    let cases: &[(&str, &str)] = &[
        (r#"m f="hello""#, "hello"),
        (r#"m f="""#, ""),
        (r#"m f="with space""#, "with space"),
        (r#"m f="a,b,c""#, "a,b,c"),
        (r#"m f="a=b=c""#, "a=b=c"),
        (r#"m f=" , = ""#, " , = "),
        (r#"m f="quote \" inside""#, r#"quote " inside"#),
        (r#"m f="\"""#, r#"""#),
        (r#"m f="back\\slash""#, r"back\slash"),
        (r#"m f="C:\\""#, r"C:\"),
        (r#"m f="\\\"""#, r#"\""#),
        (r#"m f="\\\\""#, r"\\"),
        // a backslash before any other byte is kept
        (r#"m f="a\nb\tc""#, r"a\nb\tc"),
        (r#"m f="x\y""#, r"x\y"),
        (r##"m f="# not a comment""##, "# not a comment"),
        (r#"m f="t""#, "t"),
        (r#"m f="1i""#, "1i"),
        ("m f=\"multi\nline\"", "multi\nline"),
        ("m f=\"\n\n\"", "\n\n"),
        ("m f=\"crlf\r\ninside\"", "crlf\r\ninside"),
        ("m f=\"tab\there\"", "tab\there"),
        ("m f=\"ünïcödé ✓\"", "ünïcödé ✓"),
    ];
    for (line, want) in cases {
        assert_eq!(value_of(line), s(want), "{line}");
    }
}

#[test]
fn string_field_escape_flag_and_spans() {
    let body = parse_str(r#"m a="plain",b="es\"c""#);
    let p = &body.points[0];
    let f = body.point_fields(p);
    match &f[0].value {
        FieldValue::String { span, escaped } => {
            assert!(!escaped);
            assert_eq!(body.bytes(span), b"plain");
        }
        other => panic!("{other:?}"),
    }
    match &f[1].value {
        FieldValue::String { span, escaped } => {
            assert!(escaped);
            assert_eq!(body.bytes(span), br#"es\"c"#);
            assert_eq!(body.string_value(span, *escaped), b(r#"es"c"#));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn string_fields_mixed_with_others() {
    let p = one(r#"m,t=x a="one, two",b=2i,c="x=y z",d=false 7"#);
    assert_eq!(
        p,
        point(
            "m",
            &[("t", "x")],
            &[
                ("a", s("one, two")),
                ("b", OwnedValue::Integer(2)),
                ("c", s("x=y z")),
                ("d", OwnedValue::Boolean(false)),
            ],
            7
        )
    );
}

#[test]
fn multiline_string_keeps_following_lines() {
    let text = "m f=\"a\nb\" 1\nm f=\"c\" 2\nm g=3 3\n";
    let body = parse_str(text);
    assert!(body.errors.is_empty(), "{:?}", body.errors);
    let got: Vec<_> = body
        .points
        .iter()
        .map(|p| (p.line_number, body.to_owned_point(p)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, point("m", &[], &[("f", s("a\nb"))], 1)),
            (3, point("m", &[], &[("f", s("c"))], 2)),
            (4, point("m", &[], &[("g", OwnedValue::Float(3.0))], 3)),
        ]
    );
    assert_eq!(body.line(&body.points[0]), b"m f=\"a\nb\" 1");
}

#[test]
fn quotes_in_field_keys_do_not_join_lines() {
    // A quote only opens a string in a field value, never in a field key.
    let text = "m a\"b=1 1\nm c=\"x\" 2\nm d\"e=1 3\n";
    let body = parse_str(text);
    assert!(body.errors.is_empty(), "{:?}", body.errors);
    let got: Vec<_> = body
        .points
        .iter()
        .map(|p| (p.line_number, body.to_owned_point(p)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, point("m", &[], &[("a\"b", OwnedValue::Float(1.0))], 1)),
            (2, point("m", &[], &[("c", s("x"))], 2)),
            (3, point("m", &[], &[("d\"e", OwnedValue::Float(1.0))], 3)),
        ]
    );
}

#[test]
fn unbalanced_quote_stays_local() {
    let text = "m f=\"open 1\nm g=2 2\n";
    let body = parse_str(text);
    assert_eq!(body.errors.len(), 1);
    assert_eq!(body.errors[0].line_number, 1);
    assert_eq!(body.errors[0].reason, "unbalanced quotes");
    assert_eq!(body.errors[0].line, "m f=\"open 1");
    assert_eq!(body.points.len(), 1);
    assert_eq!(body.points[0].line_number, 2);
    assert_eq!(
        body.to_owned_point(&body.points[0]),
        point("m", &[], &[("g", OwnedValue::Float(2.0))], 2)
    );
}

// ---------------------------------------------------------------------------------
// Numbers and booleans
// ---------------------------------------------------------------------------------

#[test]
fn floats() {
    let cases: &[(&str, f64)] = &[
        ("1", 1.0),
        ("0", 0.0),
        ("-0", -0.0),
        ("1.5", 1.5),
        ("-1.5", -1.5),
        (".5", 0.5),
        ("-.5", -0.5),
        ("5.", 5.0),
        ("-5.", -5.0),
        ("0.1", 0.1),
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("1e+3", 1000.0),
        ("1e-3", 0.001),
        ("-1.5e-3", -0.0015),
        ("2.5E+10", 2.5e10),
        (".5e1", 5.0),
        ("5.e1", 50.0),
        ("007", 7.0),
        ("1.7976931348623157e308", f64::MAX),
        ("-1.7976931348623157e308", f64::MIN),
        ("5e-324", 5e-324),
        ("2.2250738585072014e-308", f64::MIN_POSITIVE),
        ("9223372036854775808", 9223372036854775808.0),
        ("123456789012345678901234567890", 1.2345678901234568e29),
    ];
    for (text, want) in cases {
        let line = format!("m f={text}");
        match value_of(&line) {
            OwnedValue::Float(v) => {
                assert_eq!(v.to_bits(), want.to_bits(), "{line}: got {v}, want {want}")
            }
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn invalid_floats() {
    let cases: &[(&str, &str)] = &[
        ("1.2.3", "invalid number"),
        ("1..2", "invalid number"),
        // InfluxDB says "invalid float" for these (its scanner lets them through to
        // strconv.ParseFloat).
        ("1e", "invalid number|invalid float"),
        ("1e+", "invalid number|invalid float"),
        ("1e-", "invalid number|invalid float"),
        ("1e5.5", "invalid number|invalid float"),
        ("-", "invalid number"),
        ("--1", "invalid number"),
        (".", "invalid number"),
        ("-.", "invalid number"),
        ("1x", "invalid number"),
        ("1.5f", "invalid number"),
        ("0x10", "invalid number"),
        ("1_000", "invalid number"),
        // overflows to infinity
        ("1e400", "invalid float"),
        ("-1e400", "invalid float"),
        // NaN and infinities are not accepted
        ("NaN", "invalid number"),
        ("nan", "invalid number"),
        // InfluxDB reads anything else as an attempted boolean
        ("Inf", "invalid boolean"),
        ("inf", "invalid boolean"),
        ("+1", "invalid boolean"),
        ("e5", "invalid boolean"),
        ("abc", "invalid boolean"),
    ];
    for (text, reason) in cases {
        let line = format!("m f={text}");
        let e = one_err(&line);
        assert!(reason_matches(&e.reason, reason), "{line}: {:?}", e.reason);
        assert_eq!(e.line, line);
        assert_eq!(e.line_number, 1);
    }
}

#[test]
fn integers() {
    let cases: &[(&str, i64)] = &[
        ("0i", 0),
        ("-0i", 0),
        ("1i", 1),
        ("-1i", -1),
        ("42i", 42),
        ("007i", 7),
        ("9223372036854775807i", i64::MAX),
        ("-9223372036854775808i", i64::MIN),
        ("09223372036854775807i", i64::MAX),
        ("00000000000000000000001i", 1),
    ];
    for (text, want) in cases {
        let line = format!("m f={text}");
        assert_eq!(value_of(&line), OwnedValue::Integer(*want), "{line}");
    }
    for digits in [
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999999999999999999999999",
    ] {
        let line = format!("m f={digits}i");
        assert_eq!(one_err(&line).reason, int_range_error(digits), "{line}");
    }
    let bad: &[(&str, &str)] = &[
        ("1.5i", "invalid number"),
        ("1e3i", "invalid number"),
        ("-i", "invalid number"),
        ("1ii", "invalid number"),
        ("1i5", "invalid number"),
        ("--1i", "invalid number"),
        ("i", "invalid boolean"),
    ];
    for (text, reason) in bad {
        let line = format!("m f={text}");
        assert_eq!(one_err(&line).reason, *reason, "{line}");
    }
}

#[test]
fn unsigned() {
    let cases: &[(&str, u64)] = &[
        ("0u", 0),
        ("1u", 1),
        ("9223372036854775808u", 9_223_372_036_854_775_808),
        ("18446744073709551615u", u64::MAX),
        ("018446744073709551615u", u64::MAX),
        ("00000000000000000000001u", 1),
    ];
    for (text, want) in cases {
        let line = format!("m f={text}");
        assert_eq!(value_of(&line), OwnedValue::Unsigned(*want), "{line}");
    }
    for digits in [
        "18446744073709551616",
        "99999999999999999999999999999999999999999",
    ] {
        let line = format!("m f={digits}u");
        assert_eq!(one_err(&line).reason, uint_range_error(digits), "{line}");
    }
    let bad: &[(&str, &str)] = &[
        ("-1u", "invalid number"),
        ("-0u", "invalid number"),
        ("1.5u", "invalid number"),
        ("1e3u", "invalid number"),
        ("1uu", "invalid number"),
        ("1iu", "invalid number"),
        ("1ui", "invalid number"),
        ("u", "invalid boolean"),
    ];
    for (text, reason) in bad {
        let line = format!("m f={text}");
        assert_eq!(one_err(&line).reason, *reason, "{line}");
    }
}

#[test]
fn booleans() {
    let cases: &[(&str, bool)] = &[
        ("t", true),
        ("T", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ];
    for (text, want) in cases {
        let line = format!("m v={text}");
        assert_eq!(value_of(&line), OwnedValue::Boolean(*want), "{line}");
        // Also in the middle of a field list and before a timestamp.
        let line = format!("m a=1i,v={text},z=2i 5");
        let p = one(&line);
        assert_eq!(p.fields[1], (b("v"), OwnedValue::Boolean(*want)), "{line}");
        assert_eq!(p.timestamp, Some(5));
    }
    for text in [
        "tru", "truE", "tRUE", "TRue", "fals", "falsE", "fALSE", "FAlse", "yes", "no", "on", "off",
        "tt", "ff", "t1", "trueX", "falsey", "y", "n1",
    ] {
        let line = format!("m v={text}");
        let e = one_err(&line);
        let want = if text.starts_with(['n', 'N']) {
            "invalid number"
        } else {
            "invalid boolean"
        };
        assert_eq!(e.reason, want, "{line}");
    }
}

#[test]
fn field_value_types_match() {
    let p = one(r#"m a=1,b=1i,c=1u,d=t,e="1""#);
    let types: Vec<_> = p.fields.iter().map(|(_, v)| v.field_type()).collect();
    assert_eq!(
        types,
        vec![
            FieldType::Float,
            FieldType::Integer,
            FieldType::Unsigned,
            FieldType::Boolean,
            FieldType::String
        ]
    );
    let names: Vec<_> = types.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        names,
        vec!["float", "integer", "unsigned", "boolean", "string"]
    );
}

// ---------------------------------------------------------------------------------
// Timestamps and precision
// ---------------------------------------------------------------------------------

#[test]
fn precision_names_and_codes() {
    let cases: &[(&str, Precision)] = &[
        ("", Precision::Nanosecond),
        ("n", Precision::Nanosecond),
        ("ns", Precision::Nanosecond),
        ("u", Precision::Microsecond),
        ("us", Precision::Microsecond),
        ("µ", Precision::Microsecond),
        ("µs", Precision::Microsecond),
        ("ms", Precision::Millisecond),
        ("s", Precision::Second),
        ("m", Precision::Minute),
        ("h", Precision::Hour),
    ];
    for (name, want) in cases {
        assert_eq!(Precision::parse(name), Some(*want), "{name:?}");
    }
    for name in ["x", "sec", "MS", "S", "H", "nss", "d", " s"] {
        assert_eq!(Precision::parse(name), None, "{name:?}");
    }
    let all = [
        Precision::Nanosecond,
        Precision::Microsecond,
        Precision::Millisecond,
        Precision::Second,
        Precision::Minute,
        Precision::Hour,
    ];
    for (i, p) in all.iter().enumerate() {
        assert_eq!(p.code() as usize, i);
        assert_eq!(Precision::from_code(p.code()), Some(*p));
    }
    assert_eq!(Precision::from_code(6), None);
    assert_eq!(Precision::from_code(255), None);
}

#[test]
fn precision_multiplies_timestamp() {
    let cases: &[(Precision, i64)] = &[
        (Precision::Nanosecond, 1),
        (Precision::Microsecond, 1_000),
        (Precision::Millisecond, 1_000_000),
        (Precision::Second, 1_000_000_000),
        (Precision::Minute, 60_000_000_000),
        (Precision::Hour, 3_600_000_000_000),
    ];
    for (prec, mult) in cases {
        assert_eq!(prec.nanos_per_unit(), *mult);
        for ts in [
            0i64, 1, 7, -1, -7, 1_000_000, -1_000_000, 2_562_047, -2_562_047,
        ] {
            let body = parse_prec(&format!("m f=1 {ts}"), *prec);
            assert!(body.errors.is_empty(), "{prec:?} {ts}: {:?}", body.errors);
            let p = &body.points[0];
            assert!(p.has_timestamp);
            assert_eq!(p.timestamp, ts * mult, "{prec:?} {ts}");
        }
        // Without a timestamp the default time is used as is, whatever the precision.
        let body = parse_prec("m f=1", *prec);
        assert_eq!(body.points[0].timestamp, DEFAULT_TS);
        assert!(!body.points[0].has_timestamp);
    }
    // A realistic second-precision write.
    let body = parse_prec("cpu v=1 1700000000", Precision::Second);
    assert_eq!(body.points[0].timestamp, 1_700_000_000_000_000_000);
}

#[test]
fn timestamp_range_limits() {
    // Largest representable values per precision.
    let ok: &[(Precision, &str, i64)] = &[
        (Precision::Nanosecond, "9223372036854775806", i64::MAX - 1),
        (Precision::Nanosecond, "-9223372036854775806", i64::MIN + 2),
        (
            Precision::Microsecond,
            "9223372036854775",
            9_223_372_036_854_775_000,
        ),
        (
            Precision::Microsecond,
            "-9223372036854775",
            -9_223_372_036_854_775_000,
        ),
        (
            Precision::Millisecond,
            "9223372036854",
            9_223_372_036_854_000_000,
        ),
        (Precision::Second, "9223372036", 9_223_372_036_000_000_000),
        (Precision::Second, "-9223372036", -9_223_372_036_000_000_000),
        (Precision::Minute, "153722867", 9_223_372_020_000_000_000),
        (Precision::Hour, "2562047", 9_223_369_200_000_000_000),
        (Precision::Hour, "-2562047", -9_223_369_200_000_000_000),
        (Precision::Nanosecond, "0", 0),
        (Precision::Nanosecond, "-0", 0),
        (Precision::Nanosecond, "000123", 123),
    ];
    for (prec, text, want) in ok {
        let body = parse_prec(&format!("m f=1 {text}"), *prec);
        assert!(body.errors.is_empty(), "{prec:?} {text}: {:?}", body.errors);
        assert_eq!(body.points[0].timestamp, *want, "{prec:?} {text}");
    }
    let overflow: &[(Precision, &str)] = &[
        (Precision::Microsecond, "9223372036854776"),
        (Precision::Microsecond, "-9223372036854776"),
        (Precision::Millisecond, "9223372036855"),
        (Precision::Second, "9223372037"),
        (Precision::Second, "-9223372037"),
        (Precision::Minute, "153722868"),
        (Precision::Hour, "2562048"),
        (Precision::Hour, "-2562048"),
        (Precision::Hour, "9223372036854775807"),
        // InfluxDB reserves the extreme nanosecond values as sentinels.
        (Precision::Nanosecond, "9223372036854775807"),
        (Precision::Nanosecond, "-9223372036854775807"),
        (Precision::Nanosecond, "-9223372036854775808"),
    ];
    for (prec, text) in overflow {
        let line = format!("m f=1 {text}");
        let body = parse_prec(&line, *prec);
        assert!(body.points.is_empty(), "{prec:?} {text}");
        assert_eq!(body.errors.len(), 1);
        // InfluxDB: "time outside range -9223372036854775806 - 9223372036854775806".
        assert!(
            body.errors[0].reason.starts_with("time outside range"),
            "{prec:?} {text}: {:?}",
            body.errors[0].reason
        );
        assert_eq!(body.errors[0].line, line);
    }
}

#[test]
fn negative_timestamps() {
    for (text, want) in [
        ("-1", -1i64),
        ("-1000", -1000),
        ("-86400000000000", -86_400_000_000_000),
    ] {
        let p = one(&format!("m f=1 {text}"));
        assert_eq!(p.timestamp, Some(want));
    }
    let body = parse_prec("m f=1 -3", Precision::Second);
    assert_eq!(body.points[0].timestamp, -3_000_000_000);
}

#[test]
fn bad_timestamps() {
    let cases: &[(&str, &str)] = &[
        ("abc", "bad timestamp"),
        ("12a", "bad timestamp"),
        ("1.5", "bad timestamp"),
        ("1e9", "bad timestamp"),
        ("--1", "bad timestamp"),
        ("+1", "bad timestamp"),
        ("1-", "bad timestamp"),
        ("0x10", "bad timestamp"),
        ("1,2", "bad timestamp"),
        ("1i", "bad timestamp"),
        ("\"1\"", "bad timestamp"),
        // Something after the timestamp.
        ("1 2", "point is invalid"),
        ("1 x", "point is invalid"),
        // InfluxDB passes these to strconv.ParseInt and quotes its error.
        ("-", "bad timestamp|strconv.ParseInt*"),
        ("99999999999999999999", "bad timestamp|strconv.ParseInt*"),
        ("-99999999999999999999", "bad timestamp|strconv.ParseInt*"),
        ("9223372036854775808", "bad timestamp|strconv.ParseInt*"),
    ];
    for (ts, reason) in cases {
        let line = format!("m f=1 {ts}");
        let e = one_err(&line);
        assert!(reason_matches(&e.reason, reason), "{line}: {:?}", e.reason);
        assert_eq!(e.line, line);
    }
    // A second field set after the timestamp is not a timestamp either.
    assert_eq!(one_err("m f=1 g=2").reason, "bad timestamp");
}

// ---------------------------------------------------------------------------------
// Comments, blank lines, CRLF, leading whitespace
// ---------------------------------------------------------------------------------

#[test]
fn comments_and_blank_lines_are_skipped() {
    let text = "# a comment\n\n   \n\t# indented comment\n#cpu f=1 1\nm f=1 5\n\n# trailing\n";
    let body = parse_str(text);
    assert!(body.errors.is_empty(), "{:?}", body.errors);
    assert_eq!(body.points.len(), 1);
    assert_eq!(body.points[0].line_number, 6);
    assert_eq!(
        body.to_owned_point(&body.points[0]),
        point("m", &[], &[("f", OwnedValue::Float(1.0))], 5)
    );
    // A comment may hold anything, including quotes that never close.
    let body = parse_str("# \"unclosed\nm f=2 1\n# junk ,= \\\nm f=3 2");
    assert!(body.errors.is_empty(), "{:?}", body.errors);
    let got: Vec<_> = body
        .points
        .iter()
        .map(|p| (p.line_number, p.timestamp))
        .collect();
    assert_eq!(got, vec![(2, 1), (4, 2)]);
}

#[test]
fn crlf_line_endings() {
    let text = "cpu,h=a f=1 1\r\ncpu,h=b g=2i\r\ncpu,h=c s=\"x\"\r\n# c\r\n\r\ncpu,h=d b=true\r\ncpu,h=e u=3u 9";
    let body = parse_str(text);
    assert!(body.errors.is_empty(), "{:?}", body.errors);
    let got: Vec<_> = body
        .points
        .iter()
        .map(|p| (p.line_number, body.to_owned_point(p)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                point("cpu", &[("h", "a")], &[("f", OwnedValue::Float(1.0))], 1)
            ),
            (
                2,
                point(
                    "cpu",
                    &[("h", "b")],
                    &[("g", OwnedValue::Integer(2))],
                    DEFAULT_TS
                )
            ),
            (3, point("cpu", &[("h", "c")], &[("s", s("x"))], DEFAULT_TS)),
            (
                6,
                point(
                    "cpu",
                    &[("h", "d")],
                    &[("b", OwnedValue::Boolean(true))],
                    DEFAULT_TS
                )
            ),
            (
                7,
                point("cpu", &[("h", "e")], &[("u", OwnedValue::Unsigned(3))], 9)
            ),
        ]
    );
    // The terminator is not part of the line.
    assert_eq!(body.line(&body.points[0]), b"cpu,h=a f=1 1");
    assert_eq!(body.line(&body.points[1]), b"cpu,h=b g=2i");
    // Errors quote the line without the CR either.
    let body = parse_str("cpu\r\nm f=1\r\n");
    assert_eq!(body.errors.len(), 1);
    assert_eq!(body.errors[0].line, "cpu");
    assert_eq!(body.errors[0].reason, "missing fields");
    assert_eq!(body.points.len(), 1);
    assert_eq!(body.points[0].line_number, 2);
}

#[test]
fn leading_whitespace_is_skipped() {
    for text in ["   m f=1 3", "\tm f=1 3", " \t m f=1 3", "\n  m f=1 3"] {
        let body = parse_str(text);
        assert!(body.errors.is_empty(), "{text:?}: {:?}", body.errors);
        assert_eq!(body.points.len(), 1);
        let p = &body.points[0];
        assert_eq!(body.line(p), b"m f=1 3");
        assert_eq!(body.bytes(&p.measurement), b"m");
        assert_eq!(body.series_key(p), b"m");
        assert_eq!(
            body.to_owned_point(p),
            point("m", &[], &[("f", OwnedValue::Float(1.0))], 3)
        );
    }
    let e = one_err("   cpu");
    assert_eq!(e.line, "cpu");
    assert_eq!(e.reason, "missing fields");
    // Leading whitespace does not start the field section: the quotes below are in
    // the measurement, so they must not join the two lines.
    let body = parse_str(" a=\" f=1 1\n a=\" g=2 2");
    assert!(body.errors.is_empty(), "{:?}", body.errors);
    let got: Vec<_> = body
        .points
        .iter()
        .map(|p| (p.line_number, body.to_owned_point(p)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, point("a=\"", &[], &[("f", OwnedValue::Float(1.0))], 1)),
            (2, point("a=\"", &[], &[("g", OwnedValue::Float(2.0))], 2)),
        ]
    );
}

// ---------------------------------------------------------------------------------
// Series keys
// ---------------------------------------------------------------------------------

#[test]
fn series_key_sorts_tags() {
    let (k1, h1) = key_of("cpu,b=2,a=1 f=1");
    let (k2, h2) = key_of("cpu,a=1,b=2 f=1");
    assert_eq!(k1, b("cpu,a=1,b=2"));
    assert_eq!(k2, b("cpu,a=1,b=2"));
    assert_eq!(h1, h2);
    assert_eq!(h1, fnv1a64(b"cpu,a=1,b=2"));

    let body = parse_str("cpu,b=2,a=1 f=1");
    let p = &body.points[0];
    assert!(matches!(p.series_key, KeyLoc::Arena(_)));
    // Tags are stored in key order too.
    assert_eq!(
        body.to_owned_point(p).tags,
        vec![(b("a"), b("1")), (b("b"), b("2"))]
    );

    // Many tags in reverse order, and several permutations of the same set.
    let spellings = [
        "cpu,z=26,m=13,c=3,a=1 f=1",
        "cpu,a=1,c=3,m=13,z=26 f=1",
        "cpu,m=13,a=1,z=26,c=3 f=1",
        "cpu,c=3,z=26,a=1,m=13 f=1",
    ];
    for line in spellings {
        let (k, h) = key_of(line);
        assert_eq!(k, b("cpu,a=1,c=3,m=13,z=26"), "{line}");
        assert_eq!(h, fnv1a64(b"cpu,a=1,c=3,m=13,z=26"), "{line}");
    }
    // Prefix keys sort before longer ones.
    assert_eq!(key_of("m,ab=2,a=1 f=1").0, b("m,a=1,ab=2"));
}

#[test]
fn series_key_ignores_fields_and_time() {
    let (k1, h1) = key_of("cpu,host=a f=1 1");
    let (k2, h2) = key_of("cpu,host=a g=\"x\",h=2i 2");
    let (k3, h3) = key_of("cpu,host=a   z=t");
    assert_eq!(k1, k2);
    assert_eq!(k1, k3);
    assert_eq!(h1, h2);
    assert_eq!(h1, h3);
    let (_, h4) = key_of("cpu,host=b f=1 1");
    assert_ne!(h1, h4);
    let (_, h5) = key_of("mem,host=a f=1 1");
    assert_ne!(h1, h5);
}

#[test]
fn series_key_canonical_escaping() {
    let cases: &[(&str, &str)] = &[
        // already canonical escapes stay as written
        (r"c\ pu,t\ k=v\,1 f=1", r"c\ pu,t\ k=v\,1"),
        (r"cpu,t\=k=v\=1 f=1", r"cpu,t\=k=v\=1"),
        // `=` needs no escape in a measurement: the canonical form drops it
        (r"c\=pu,t=v f=1", "c=pu,t=v"),
        ("c=pu,t=v f=1", "c=pu,t=v"),
        // other backslashes are kept
        (r"c\pu,t=v\x f=1", r"c\pu,t=v\x"),
        // escaped and unsorted at once
        (r"c\ pu,z\ z=1,a\,a=2 f=1", r"c\ pu,a\,a=2,z\ z=1"),
    ];
    for (line, want) in cases {
        let (k, h) = key_of(line);
        assert_eq!(k, b(want), "{line}");
        assert_eq!(h, fnv1a64(want.as_bytes()), "{line}");
    }
    // Two spellings of the same measurement are the same series.
    assert_eq!(key_of(r"c\=pu f=1").1, key_of("c=pu f=1").1);
}

#[test]
fn series_key_sorts_by_unescaped_tag_keys() {
    // `a\ b` unescapes to "a b", which sorts before "a!" although the escaped
    // spelling `a\` sorts after it. Both spellings are one series, with tags in
    // unescaped key order.
    let (k1, h1) = key_of(r"cpu,a!=1,a\ b=2 f=1");
    let (k2, h2) = key_of(r"cpu,a\ b=2,a!=1 f=1");
    assert_eq!(k1, k2);
    assert_eq!(h1, h2);
    assert_eq!(k1, b(r"cpu,a\ b=2,a!=1"));
    assert_eq!(
        one(r"cpu,a!=1,a\ b=2 f=1").tags,
        vec![(b("a b"), b("2")), (b("a!"), b("1"))]
    );
}

#[test]
fn duplicate_tags() {
    for line in [
        "cpu,a=1,a=2 f=1",
        "cpu,a=1,a=1 f=1",
        "cpu,b=1,a=1,b=2 f=1",
        "cpu,a=1,b=1,c=1,a=9 f=1",
        r"cpu,a\ b=1,a\ b=2 f=1",
    ] {
        let e = one_err(line);
        assert_eq!(e.reason, "duplicate tags", "{line}");
        assert_eq!(e.line, line);
    }
    // Same value, different keys is fine; same key in different case too.
    let p = one("cpu,a=1,A=1 f=1");
    assert_eq!(p.tags, vec![(b("A"), b("1")), (b("a"), b("1"))]);
    // Duplicate field keys are not an error for the parser.
    let p = one("cpu f=1,f=2");
    assert_eq!(p.fields.len(), 2);
}

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

#[test]
fn every_error_reason() {
    let cases: &[(&str, &str)] = &[
        // measurement
        (",t=1 f=1", "missing measurement"),
        (",", "missing measurement"),
        (" ,f=1", "missing measurement"),
        // fields missing entirely
        ("cpu", "missing fields"),
        ("cpu,t=1", "missing fields"),
        // a separator but nothing after it
        ("cpu ", "invalid field format"),
        ("cpu   ", "invalid field format"),
        ("cpu,t=1 ", "invalid field format"),
        (r"cpu\ f=1", "missing fields"),
        // tag keys
        ("cpu,=1 f=1", "missing tag key"),
        ("cpu, f=1", "missing tag key"),
        ("cpu,,t=1 f=1", "missing tag key"),
        ("cpu,t=1, f=1", "missing tag key"),
        ("cpu,", "missing tag key"),
        // tag values
        ("cpu,t f=1", "missing tag value"),
        ("cpu,t= f=1", "missing tag value"),
        ("cpu,t=,u=1 f=1", "missing tag value"),
        ("cpu,t,u=1 f=1", "missing tag value"),
        ("cpu,t", "missing tag value"),
        ("cpu,t=", "missing tag value"),
        ("cpu,t=a=b f=1", "invalid tag format"),
        // field keys
        ("cpu =1", "missing field key"),
        ("cpu f=1,=2", "missing field key"),
        // a field without `=`
        ("cpu f", "invalid field format"),
        ("cpu f=1,", "invalid field format"),
        ("cpu f=1,,g=2", "invalid field format"),
        ("cpu f=1, g=2", "invalid field format"),
        ("cpu f=1,g", "invalid field format"),
        ("cpu f=1,g 5", "invalid field format"),
        // field values
        ("cpu f=", "missing field value"),
        ("cpu f=,g=1", "missing field value"),
        ("cpu f= 1", "missing field value"),
        ("cpu f=1,g=", "missing field value"),
        // numbers, booleans, strings
        ("cpu f=1x", "invalid number"),
        ("cpu f=-", "invalid number"),
        ("cpu f=tru", "invalid boolean"),
        ("cpu f=yes", "invalid boolean"),
        ("cpu f=\"abc", "unbalanced quotes"),
        ("cpu f=\"abc\\\"", "unbalanced quotes"),
        ("cpu f=1,g=\"x", "unbalanced quotes"),
        ("cpu f=\"a\"b", "invalid field format"),
        ("cpu f=\"a\"\"b\"", "invalid field format"),
        ("cpu f=1e400", "invalid float"),
        (
            "cpu f=9223372036854775808i",
            "unable to parse integer 9223372036854775808*",
        ),
        (
            "cpu f=18446744073709551616u",
            "unable to parse unsigned 18446744073709551616*",
        ),
        // timestamps
        ("cpu f=1 x", "bad timestamp"),
        ("cpu f=1 1 1", "point is invalid"),
        ("cpu f=1 9223372036854775807", "time outside range*"),
    ];
    for (line, reason) in cases {
        let e = one_err(line);
        assert!(
            reason_matches(&e.reason, reason),
            "{line:?}: {:?}",
            e.reason
        );
        assert_eq!(e.line_number, 1, "{line:?}");
        assert_eq!(e.line, line.trim_start(), "{line:?}");
        assert_eq!(
            e.to_string(),
            format!("unable to parse '{}': {}", line.trim_start(), e.reason)
        );
    }
}

#[test]
fn errors_carry_line_numbers_and_valid_lines_survive() {
    let text = concat!(
        "cpu,host=a f=1 1\n",        // 1 ok
        "\n",                        // 2 blank
        "# comment\n",               // 3 comment
        "cpu,host=b f=1.2.3 2\n",    // 4 invalid number
        "cpu,host=c s=\"multi\n",    // 5 ok, string spans two lines
        "line\" 3\n",                // 6
        "cpu,host=d\n",              // 7 missing fields
        "  cpu,host=e f=5i 5\r\n",   // 8 ok
        "cpu,host=f,host=g f=1 6\n", // 9 duplicate tags
        "cpu,host=h f=tru 7\n",      // 10 invalid boolean
        "cpu,host=i f=\"open 8\n",   // 11 unbalanced quotes
        "cpu,host=j f=9u 9",         // 12 ok, no trailing newline
    );
    let body = parse_str(text);
    let points: Vec<_> = body
        .points
        .iter()
        .map(|p| (p.line_number, body.to_owned_point(p)))
        .collect();
    assert_eq!(
        points,
        vec![
            (
                1,
                point("cpu", &[("host", "a")], &[("f", OwnedValue::Float(1.0))], 1)
            ),
            (
                5,
                point("cpu", &[("host", "c")], &[("s", s("multi\nline"))], 3)
            ),
            (
                8,
                point("cpu", &[("host", "e")], &[("f", OwnedValue::Integer(5))], 5)
            ),
            (
                12,
                point(
                    "cpu",
                    &[("host", "j")],
                    &[("f", OwnedValue::Unsigned(9))],
                    9
                )
            ),
        ]
    );
    let errors: Vec<_> = body
        .errors
        .iter()
        .map(|e| (e.line_number, e.reason.as_str(), e.line.as_str()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (4, "invalid number", "cpu,host=b f=1.2.3 2"),
            (7, "missing fields", "cpu,host=d"),
            (9, "duplicate tags", "cpu,host=f,host=g f=1 6"),
            (10, "invalid boolean", "cpu,host=h f=tru 7"),
            (11, "unbalanced quotes", "cpu,host=i f=\"open 8"),
        ]
    );
    // Failed lines leave nothing behind in the flat arrays.
    let tags: usize = body.points.iter().map(|p| p.tags.len()).sum();
    let fields: usize = body.points.iter().map(|p| p.fields.len()).sum();
    assert_eq!(tags, body.tags.len());
    assert_eq!(fields, body.fields.len());
    assert_eq!(
        body.errors[0].to_string(),
        "unable to parse 'cpu,host=b f=1.2.3 2': invalid number"
    );
}

#[test]
fn failed_lines_roll_back_partial_state() {
    // The failing line has sorted-out-of-order tags (arena key) and several fields
    // before the error; the next point must not see any of it.
    let body = parse_str("cpu,z=1,a=2 f=1,g=2,h=bad\ncpu,y=1,b=2 f=3 1");
    assert_eq!(body.errors.len(), 1);
    assert_eq!(body.points.len(), 1);
    let p = &body.points[0];
    assert_eq!(body.tags.len(), 2);
    assert_eq!(body.fields.len(), 1);
    assert_eq!(body.series_key(p), b"cpu,b=2,y=1");
    assert_eq!(body.key_arena, b("cpu,b=2,y=1"));
    assert_eq!(
        body.to_owned_point(p),
        point(
            "cpu",
            &[("b", "2"), ("y", "1")],
            &[("f", OwnedValue::Float(3.0))],
            1
        )
    );
}

// ---------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------

#[test]
fn encode_escapes() {
    let p = OwnedPoint {
        measurement: b("c pu,x=y"),
        tags: vec![(b("t,k"), b("v=1 2"))],
        fields: vec![
            (b("f k"), OwnedValue::Float(1.0)),
            (b("s"), s("a\"b\\c")),
            (b("i"), OwnedValue::Integer(-3)),
            (b("u"), OwnedValue::Unsigned(4)),
            (b("b"), OwnedValue::Boolean(false)),
            (b("e"), OwnedValue::Float(1e300)),
        ],
        timestamp: Some(-5),
    };
    let mut out = Vec::new();
    encode(&p, &mut out);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        r#"c\ pu\,x=y,t\,k=v\=1\ 2 f\ k=1.0,s="a\"b\\c",i=-3i,u=4u,b=false,e=1e300 -5"#
    );
    let body = parse(Bytes::from(out), Precision::Nanosecond, 0);
    assert!(body.errors.is_empty(), "{:?}", body.errors);
    assert_eq!(body.to_owned_point(&body.points[0]), p);

    let mut out = Vec::new();
    encode(
        &point("m", &[], &[("f", OwnedValue::Boolean(true))], 0),
        &mut out,
    );
    assert_eq!(out, b("m f=true 0"));
    let mut out = Vec::new();
    encode(
        &OwnedPoint {
            timestamp: None,
            ..point("m", &[], &[("f", OwnedValue::Integer(1))], 0)
        },
        &mut out,
    );
    assert_eq!(out, b("m f=1i"));
}

// ---------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------

/// A name byte: printable ASCII except the backslash.
fn name_byte() -> impl Strategy<Value = u8> {
    // 0x20..=0x7d with the backslash mapped to the missing '~' (no rejections).
    (0x20u8..=0x7d).prop_map(|b| if b == b'\\' { b'~' } else { b })
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(name_byte(), 1..10)
}

fn measurement() -> impl Strategy<Value = Vec<u8>> {
    name().prop_map(|mut n| {
        if n[0] == b'#' {
            n[0] = b'm';
        }
        n
    })
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        proptest::num::f64::POSITIVE
            | proptest::num::f64::NEGATIVE
            | proptest::num::f64::NORMAL
            | proptest::num::f64::SUBNORMAL
            | proptest::num::f64::ZERO,
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 100.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::MIN_POSITIVE),
    ]
}

fn value() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        finite_f64().prop_map(OwnedValue::Float),
        any::<i64>().prop_map(OwnedValue::Integer),
        any::<u64>().prop_map(OwnedValue::Unsigned),
        any::<bool>().prop_map(OwnedValue::Boolean),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(OwnedValue::String),
        proptest::collection::vec(
            proptest::sample::select(b"ab \",=\\\n\r\t#".to_vec()),
            0..16
        )
        .prop_map(OwnedValue::String),
    ]
}

/// Valid nanosecond timestamps: InfluxDB reserves i64::MIN, i64::MIN + 1 and i64::MAX.
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        (i64::MIN + 2)..=(i64::MAX - 1),
        Just(i64::MIN + 2),
        Just(i64::MAX - 1),
        Just(0i64),
        -1000i64..1000,
    ]
}

fn owned_point() -> impl Strategy<Value = OwnedPoint> {
    (
        measurement(),
        proptest::collection::btree_map(name(), name(), 0..5),
        proptest::collection::vec((name(), value()), 1..6),
        timestamp(),
    )
        .prop_map(|(measurement, tags, fields, ts)| {
            // Field keys unique, written order kept.
            let mut seen = std::collections::HashSet::new();
            let fields = fields
                .into_iter()
                .filter(|(k, _)| seen.insert(k.clone()))
                .collect();
            OwnedPoint {
                measurement,
                // A BTreeMap iterates in key order: the parser's canonical tag order.
                tags: tags.into_iter().collect(),
                fields,
                timestamp: Some(ts),
            }
        })
}

/// The canonical series key of an owned point (tags already sorted).
fn expected_key(p: &OwnedPoint) -> Vec<u8> {
    let mut out = Vec::new();
    escape_into(&p.measurement, b", ", &mut out);
    for (k, v) in &p.tags {
        out.push(b',');
        escape_into(k, b",= ", &mut out);
        out.push(b'=');
        escape_into(v, b",= ", &mut out);
    }
    out
}

fn span_ok(sp: &Span, len: usize) -> bool {
    sp.start <= sp.end && sp.end as usize <= len
}

fn span_within(inner: &Span, outer: &Span) -> bool {
    inner.start >= outer.start && inner.end <= outer.end && inner.start <= inner.end
}

/// Everything a caller may index must be in bounds, whatever the input was.
fn check_invariants(body: &ParsedBody) -> Result<(), TestCaseError> {
    let len = body.body.len();
    let lines = body.body.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let mut last_line = 0u32;
    for p in &body.points {
        prop_assert!(span_ok(&p.line, len));
        prop_assert!(span_within(&p.measurement, &p.line));
        prop_assert!(p.measurement.start < p.measurement.end);
        prop_assert!(p.tags.start <= p.tags.end && p.tags.end as usize <= body.tags.len());
        prop_assert!(p.fields.start < p.fields.end && p.fields.end as usize <= body.fields.len());
        prop_assert!(p.line_number >= 1 && p.line_number <= lines);
        prop_assert!(p.line_number > last_line, "line numbers increase");
        last_line = p.line_number;
        for t in body.point_tags(p) {
            prop_assert!(span_within(&t.key, &p.line));
            prop_assert!(span_within(&t.value, &p.line));
            prop_assert!(t.key.start < t.key.end && t.value.start < t.value.end);
        }
        // Tags are sorted by unescaped key and unique.
        let keys: Vec<_> = body
            .point_tags(p)
            .iter()
            .map(|t| unescape(body.bytes(&t.key)))
            .collect();
        prop_assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "tags sorted: {keys:?}"
        );
        for f in body.point_fields(p) {
            prop_assert!(span_within(&f.key, &p.line));
            if let FieldValue::String { span, .. } = &f.value {
                prop_assert!(span_within(span, &p.line));
            }
        }
        match &p.series_key {
            KeyLoc::Body(sp) => prop_assert!(span_within(sp, &p.line)),
            KeyLoc::Arena(sp) => prop_assert!(span_ok(sp, body.key_arena.len())),
        }
        let key = body.series_key(p);
        prop_assert_eq!(body.series_hash(p), fnv1a64(key));
        prop_assert_eq!(p.key_hash, key_hash(key));
        let owned = body.to_owned_point(p);
        prop_assert!(!owned.fields.is_empty());
        // The canonical key is the encoding of the decoded measurement and tags.
        prop_assert_eq!(key, &expected_key(&owned)[..]);
        // Whatever parsed re-encodes to a line that parses back to the same point.
        let mut enc = Vec::new();
        encode(&owned, &mut enc);
        let again = parse(Bytes::from(enc.clone()), Precision::Nanosecond, 0);
        prop_assert!(
            again.errors.is_empty() && again.points.len() == 1,
            "{:?} re-encoded as {:?}: {:?}",
            String::from_utf8_lossy(body.line(p)),
            String::from_utf8_lossy(&enc),
            again.errors
        );
        prop_assert_eq!(again.to_owned_point(&again.points[0]), owned);
    }
    for e in &body.errors {
        prop_assert!(e.line_number >= 1 && e.line_number <= lines);
        prop_assert!(!e.reason.is_empty());
    }
    Ok(())
}

/// A valid body of several points joined by `\n` or `\r\n`.
fn encode_body(points: &[OwnedPoint], crlf: bool, trailing: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        encode(p, &mut out);
    }
    if trailing {
        out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    }
    out
}

#[derive(Clone, Debug)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        proptest::sample::select(b" ,=\"\\\n\r\t#-.0123456789eEiutTfF".to_vec()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        match *m {
            Mutation::Replace(i, b) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] = b;
            }
            Mutation::Insert(i, b) => {
                let i = i % (bytes.len() + 1);
                bytes.insert(i, b);
            }
            Mutation::Delete(i) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}

fn precision() -> impl Strategy<Value = Precision> {
    proptest::sample::select(vec![
        Precision::Nanosecond,
        Precision::Microsecond,
        Precision::Millisecond,
        Precision::Second,
        Precision::Minute,
        Precision::Hour,
    ])
}

proptest! {
    // No regression files: a failure prints its minimal input instead.
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn prop_roundtrip(
        points in proptest::collection::vec(owned_point(), 1..8),
        crlf in any::<bool>(),
        trailing in any::<bool>(),
    ) {
        let text = encode_body(&points, crlf, trailing);
        let body = parse(Bytes::from(text.clone()), Precision::Nanosecond, 0);
        prop_assert!(
            body.errors.is_empty(),
            "errors {:?} for {:?}",
            body.errors,
            String::from_utf8_lossy(&text)
        );
        prop_assert_eq!(body.points.len(), points.len());
        let mut line = 1u32;
        for (p, want) in body.points.iter().zip(&points) {
            prop_assert_eq!(&body.to_owned_point(p), want);
            prop_assert!(p.has_timestamp);
            prop_assert_eq!(p.line_number, line);
            let key = expected_key(want);
            prop_assert_eq!(body.series_key(p), &key[..]);
            prop_assert_eq!(body.series_hash(p), fnv1a64(&key));
            // The next line starts after this one's newlines (in strings) and its
            // terminator.
            let mut enc = Vec::new();
            encode(want, &mut enc);
            prop_assert_eq!(body.line(p), &enc[..]);
            line += enc.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        }
        check_invariants(&body)?;
    }

    #[test]
    fn prop_roundtrip_any_precision(
        mut p in owned_point(),
        prec in precision(),
        units in any::<i64>(),
    ) {
        let mult = prec.nanos_per_unit();
        let units = units / mult;
        p.timestamp = Some(units);
        let mut text = Vec::new();
        encode(&p, &mut text);
        let body = parse(Bytes::from(text), prec, 0);
        let ns = units * mult;
        if ns <= i64::MIN + 1 || ns == i64::MAX {
            prop_assert_eq!(body.errors.len(), 1);
            prop_assert!(body.errors[0].reason.starts_with("time outside range"));
        } else {
            prop_assert!(body.errors.is_empty(), "{:?}", body.errors);
            let got = body.to_owned_point(&body.points[0]);
            prop_assert_eq!(got.timestamp, Some(ns));
            p.timestamp = Some(ns);
            prop_assert_eq!(got, p);
        }
    }

    #[test]
    fn prop_tag_order_does_not_matter(
        p in owned_point(),
        seed in any::<u64>(),
    ) {
        // Write the tags in a scrambled order: same point, same series key and hash.
        let mut scrambled = p.clone();
        let n = scrambled.tags.len();
        let mut x = seed | 1;
        for i in (1..n).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            scrambled.tags.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut a = Vec::new();
        encode(&p, &mut a);
        let mut b2 = Vec::new();
        encode(&scrambled, &mut b2);
        let pa = parse(Bytes::from(a), Precision::Nanosecond, 0);
        let pb = parse(Bytes::from(b2), Precision::Nanosecond, 0);
        prop_assert!(pa.errors.is_empty() && pb.errors.is_empty());
        prop_assert_eq!(pa.series_key(&pa.points[0]), pb.series_key(&pb.points[0]));
        prop_assert_eq!(pa.series_hash(&pa.points[0]), pb.series_hash(&pb.points[0]));
        prop_assert_eq!(pa.points[0].key_hash, pb.points[0].key_hash);
        prop_assert_eq!(pb.to_owned_point(&pb.points[0]), p);
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        prec in precision(),
    ) {
        let body = parse(Bytes::from(bytes), prec, 0);
        check_invariants(&body)?;
    }

    #[test]
    fn prop_line_protocol_alphabet_never_panics(
        bytes in proptest::collection::vec(
            proptest::sample::select(b"ab=, \"\\\n\r\t#-.019eiuTf".to_vec()),
            0..2048,
        ),
        prec in precision(),
    ) {
        let body = parse(Bytes::from(bytes), prec, 0);
        check_invariants(&body)?;
    }

    #[test]
    fn prop_mutated_valid_lines_never_panic(
        points in proptest::collection::vec(owned_point(), 1..6),
        muts in proptest::collection::vec(mutation(), 1..8),
        prec in precision(),
    ) {
        let text = apply(encode_body(&points, false, true), &muts);
        let body = parse(Bytes::from(text), prec, 0);
        check_invariants(&body)?;
    }
}

proptest! {
    /// The float fast path gives exactly what the full parser gives.
    #[test]
    fn prop_simple_float_fast_path_is_exact(
        negative in any::<bool>(),
        digits in "[0-9]{1,17}",
        dot in 0usize..18,
    ) {
        let dot = dot.min(digits.len());
        let mut text = String::new();
        if negative {
            text.push('-');
        }
        text.push_str(&digits[..dot]);
        text.push('.');
        text.push_str(&digits[dot..]);
        let expected: f64 = text.parse().unwrap();
        match parse_simple_float(text.as_bytes()) {
            Some(v) => prop_assert_eq!(v.to_bits(), expected.to_bits(), "{}", text),
            None => prop_assert!(digits.len() > 15, "fast path refused {}", text),
        }
        let without_dot = text.replace('.', "");
        if let Some(v) = parse_simple_float(without_dot.as_bytes()) {
            prop_assert_eq!(v.to_bits(), without_dot.parse::<f64>().unwrap().to_bits());
        }
    }
}

proptest! {
    /// The prefix-first tag key order is plain byte order.
    #[test]
    fn prop_raw_key_cmp_is_byte_order(a in proptest::collection::vec(any::<u8>(), 0..20), b in proptest::collection::vec(any::<u8>(), 0..20)) {
        prop_assert_eq!(raw_key_cmp(&a, &b), a.cmp(&b));
        let mut c = a.clone();
        c.extend_from_slice(&b);
        prop_assert_eq!(raw_key_cmp(&a, &c), a.cmp(&c));
        prop_assert_eq!(raw_key_cmp(&c, &a), c.cmp(&a));
    }
}
