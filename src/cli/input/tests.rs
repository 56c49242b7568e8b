use std::io::{self, BufReader, Cursor};

use super::*;

/// An item that the reader passed on, in a form that tests can compare.
#[derive(Debug, PartialEq)]
enum Seen {
    Entry {
        number: u64,
        line: Option<u64>,
        text: String,
    },
    Invalid {
        number: u64,
        line: Option<u64>,
        message: String,
    },
}

fn read_all(input: &[u8]) -> (Vec<Seen>, Result<(), ReadError>) {
    read_all_from(Cursor::new(input.to_vec()))
}

fn read_all_from(reader: impl BufRead) -> (Vec<Seen>, Result<(), ReadError>) {
    let mut seen = Vec::new();
    let result = read_entries(reader, &mut |item| {
        seen.push(match item {
            Item::Entry(entry) => Seen::Entry {
                number: entry.location.number,
                line: entry.location.line,
                text: String::from_utf8_lossy(entry.text).into_owned(),
            },
            Item::Invalid { location, message } => Seen::Invalid {
                number: location.number,
                line: location.line,
                message,
            },
        });
        Ok(())
    });
    (seen, result)
}

fn entry(number: u64, line: Option<u64>, text: &str) -> Seen {
    Seen::Entry {
        number,
        line,
        text: text.to_owned(),
    }
}

fn invalid(number: u64, line: Option<u64>, message: &str) -> Seen {
    Seen::Invalid {
        number,
        line,
        message: message.to_owned(),
    }
}

#[test]
fn json_lines_keep_bytes_and_lines() {
    let (seen, result) = read_all(b"\n  \n  {\"a\": 1}\r\n\n{\"b\":2}");
    assert!(result.is_ok(), "read succeeds");
    assert_eq!(
        seen,
        [
            entry(1, Some(3), "  {\"a\": 1}\r"),
            entry(2, Some(5), "{\"b\":2}"),
        ],
        "indent and carriage return kept, blank lines skipped but counted"
    );
}

#[test]
fn json_lines_report_bad_lines_and_go_on() {
    let (seen, result) = read_all(b"{\"a\":1}\nnope\n[1]\n\"s\"\n{\"b\":\n{\"c\":3}\n");
    assert!(result.is_ok(), "read succeeds");
    assert_eq!(
        seen,
        [
            entry(1, Some(1), "{\"a\":1}"),
            invalid(2, Some(2), "invalid JSON: expected ident at column 2"),
            invalid(
                3,
                Some(3),
                "not a LogEntry: expected a JSON object, found an array"
            ),
            invalid(
                4,
                Some(4),
                "not a LogEntry: expected a JSON object, found a string"
            ),
            invalid(
                5,
                Some(5),
                "invalid JSON: EOF while parsing a value at column 5"
            ),
            entry(6, Some(6), "{\"c\":3}"),
        ],
        "every line is passed on in order"
    );
}

#[test]
fn array_elements_compacted_in_key_order() {
    let input = b"\n [\n  {\"z\": 1, \"a\": \"x y\\\" \\\\\"},\n  {\"b\": [1, 2]}\n]\n";
    let (seen, result) = read_all(input);
    assert!(result.is_ok(), "read succeeds");
    assert_eq!(
        seen,
        [
            entry(1, None, r#"{"z":1,"a":"x y\" \\"}"#),
            entry(2, None, r#"{"b":[1,2]}"#),
        ],
        "whitespace outside strings removed, keys in input order"
    );
}

#[test]
fn array_non_object_reported_and_skipped() {
    let (seen, result) = read_all(b"[{\"a\":1}, 7, {\"b\":2}]");
    assert!(result.is_ok(), "read succeeds");
    assert_eq!(
        seen,
        [
            entry(1, None, r#"{"a":1}"#),
            invalid(
                2,
                None,
                "not a LogEntry: expected a JSON object, found a number"
            ),
            entry(3, None, r#"{"b":2}"#),
        ],
        "the number is reported by position"
    );
}

#[test]
fn array_syntax_error_ends_input() {
    let (seen, result) = read_all(b"[{\"a\":1},\n {\"b\": }, {\"c\":3}]");
    assert!(
        result.is_ok(),
        "a syntax error is an item, not a read error"
    );
    assert_eq!(
        seen,
        [
            entry(1, None, r#"{"a":1}"#),
            invalid(2, Some(2), "invalid JSON: expected value at column 8"),
        ],
        "entries before the error are kept and the rest is dropped"
    );
}

#[test]
fn array_trailing_text_reported() {
    let (seen, _) = read_all(b"[{\"a\":1}] {}");
    assert_eq!(
        seen.last(),
        Some(&invalid(
            2,
            Some(1),
            "invalid JSON: trailing characters at column 11"
        )),
        "text after the array"
    );
}

#[test]
fn blank_input_has_no_entries() {
    for input in [&b""[..], b"\n\n", b"  \t \r\n "] {
        let (seen, result) = read_all(input);
        assert!(result.is_ok(), "read succeeds for {input:?}");
        assert!(seen.is_empty(), "no entries in {input:?}");
    }
}

#[test]
fn long_indent_across_buffers_kept() {
    // A reader buffer smaller than the indent makes skip_blank_lines consume it in parts.
    let mut input = b"\n".to_vec();
    input.extend(std::iter::repeat_n(b' ', 40));
    input.extend(b"{\"a\":1}\n");
    let reader = BufReader::with_capacity(8, Cursor::new(input));
    let (seen, _) = read_all_from(reader);
    let expected = format!("{}{{\"a\":1}}", " ".repeat(40));
    assert_eq!(seen, [entry(1, Some(2), &expected)], "indent restored");
}

#[test]
fn visit_error_stops_reading() {
    for input in [&b"{}\n{}\n"[..], b"[{}, {}]"] {
        let mut calls = 0;
        let result = read_entries(Cursor::new(input), &mut |_| {
            calls += 1;
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        });
        assert!(
            matches!(result, Err(ReadError::Output(ref err)) if err.kind() == io::ErrorKind::BrokenPipe),
            "output error returned for {input:?}: {result:?}"
        );
        assert_eq!(calls, 1, "no call after the error for {input:?}");
    }
}

#[test]
fn compact_json_keeps_string_whitespace() {
    let mut out = Vec::new();
    compact_json("{ \"a b\" : [ 1 ,\n\t2 ], \"c\\\"\" : \" \" }", &mut out);
    assert_eq!(out, br#"{"a b":[1,2],"c\"":" "}"#, "compacted text");
}
