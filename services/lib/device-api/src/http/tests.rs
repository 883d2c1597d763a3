use super::*;

fn complete(bytes: &[u8]) -> (Response, usize) {
    match parse(bytes, 1024, false).unwrap() {
        Parsed::Complete(r, n) => (r, n),
        Parsed::Partial => panic!("partial"),
    }
}

#[test]
fn requests_carry_length_and_type() {
    let r = request(
        "POST",
        "10.0.2.2:8443",
        "/api/v2/edgedevice/register",
        Some(("application/x-proto-binary", b"xyz")),
    );
    assert_eq!(
        r,
        b"POST /api/v2/edgedevice/register HTTP/1.1\r\nHost: 10.0.2.2:8443\r\nUser-Agent: lichen-zedagent\r\nContent-Type: application/x-proto-binary\r\nContent-Length: 3\r\n\r\nxyz"
    );
}

#[test]
fn a_response_with_a_body_and_a_reason() {
    let bytes =
        b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\nx-lichen-reason: not admitted\r\n\r\nhi";
    let (r, n) = complete(bytes);
    assert_eq!(n, bytes.len());
    assert_eq!(r.status, 403);
    assert_eq!(r.reason.as_deref(), Some("not admitted"));
    assert_eq!(r.body, b"hi");
    assert!(!r.close);
}

#[test]
fn every_prefix_is_partial_and_a_cut_is_truncated() {
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    for cut in 0..bytes.len() {
        assert_eq!(
            parse(&bytes[..cut], 1024, false),
            Ok(Parsed::Partial),
            "cut at {cut}"
        );
        assert_eq!(
            parse(&bytes[..cut], 1024, true),
            Err(HttpError::Truncated),
            "cut at {cut}"
        );
    }
    let (r, _) = complete(bytes);
    assert!(r.close);
}

#[test]
fn not_modified_has_no_body() {
    let (r, n) = complete(b"HTTP/1.1 304 Not Modified\r\n\r\n");
    assert_eq!((r.status, n, r.body.len()), (304, 29, 0));
}

#[test]
fn chunked_bodies_are_joined() {
    let bytes =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let (r, n) = complete(bytes);
    assert_eq!((r.body.as_slice(), n), (&b"abcde"[..], bytes.len()));
    for cut in 0..bytes.len() {
        assert_eq!(
            parse(&bytes[..cut], 1024, false),
            Ok(Parsed::Partial),
            "cut at {cut}"
        );
    }
}

#[test]
fn bad_responses_are_refused() {
    let refused = |bytes: &[u8]| parse(bytes, 8, false).unwrap_err();
    assert_eq!(
        refused(b"HTTP/1.1 200 OK\r\n\r\n"),
        HttpError::Malformed("no Content-Length")
    );
    assert_eq!(
        refused(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
        HttpError::TooLarge
    );
    assert_eq!(
        refused(b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n"),
        HttpError::Malformed("Content-Length")
    );
    assert_eq!(
        refused(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
        HttpError::Malformed("Content-Length")
    );
    assert_eq!(
        refused(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        HttpError::TooLarge
    );
    assert_eq!(
        refused(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
        HttpError::Malformed("not HTTP/1.1")
    );
    assert_eq!(
        refused(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        HttpError::Malformed("transfer coding other than chunked")
    );
    assert_eq!(
        refused(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n"),
        HttpError::TooLarge
    );
    assert_eq!(
        refused(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc"),
        HttpError::Malformed("chunk not followed by CRLF")
    );
    assert_eq!(
        refused(b"garbage\r\n\r\n"),
        HttpError::Malformed("status line or headers")
    );
    let many: String = (0..40).map(|i| alloc::format!("h{i}: x\r\n")).collect();
    assert_eq!(
        refused(alloc::format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()),
        HttpError::TooLarge
    );
    let long = alloc::vec![b'a'; MAX_HEAD + 10];
    let mut head = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
    head.extend_from_slice(&long);
    assert_eq!(refused(&head), HttpError::TooLarge);
}
