//! Splitting a page into its records byte by byte, so one broken record cannot poison the
//! page it came in.
//!
//! The hot path parses a page with serde (records kept as borrowed raw JSON). serde rejects
//! the whole body when any one string in it is not UTF-8, and then the page could never be
//! read: the source would stall on it forever. Only then does [`scan`] run: a small scanner
//! that knows JSON's lexical structure (strings, escapes, nesting) and nothing else, finds
//! the records array and returns each element's exact bytes, whatever they contain, plus the
//! envelope with the array emptied (so the paging fields can still be read). A body in which
//! no such array can be found is not a page at all.

/// A page split by [`scan`].
#[derive(Debug, PartialEq, Eq)]
pub struct Scanned<'a> {
    /// Each element of the records array, exactly as sent.
    pub elements: Vec<&'a [u8]>,
    /// The body with the records array emptied (`"results":[]`), for the paging fields.
    pub envelope: Vec<u8>,
}

/// Find the top-level member `key` of the JSON object `body`, which must be an array, and
/// split it into elements. Errors say where the body stops looking like a page.
pub fn scan<'a>(body: &'a [u8], key: &str) -> Result<Scanned<'a>, String> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return Err("the body is not a JSON object".into());
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        match body.get(i) {
            Some(b'}') => return Err(format!("no `{key}` array in the body")),
            Some(b',') => {
                i += 1;
                continue;
            }
            Some(b'"') => {}
            _ => return Err(format!("unexpected byte at offset {i}")),
        }
        let name_end = skip_string(body, i)?;
        let name = &body[i + 1..name_end - 1];
        i = skip_ws(body, name_end);
        if body.get(i) != Some(&b':') {
            return Err(format!("expected `:` at offset {i}"));
        }
        i = skip_ws(body, i + 1);
        if name == key.as_bytes() {
            if body.get(i) != Some(&b'[') {
                return Err(format!("`{key}` is not an array"));
            }
            return split_array(body, i);
        }
        i = skip_value(body, i)?;
    }
}

/// Split the array opening at `open` into its elements.
fn split_array(body: &[u8], open: usize) -> Result<Scanned<'_>, String> {
    let mut elements = Vec::new();
    let mut i = skip_ws(body, open + 1);
    if body.get(i) == Some(&b']') {
        return Ok(Scanned {
            elements,
            envelope: body.to_vec(),
        });
    }
    loop {
        i = skip_ws(body, i);
        let start = i;
        i = skip_value(body, i)?;
        elements.push(&body[start..i]);
        i = skip_ws(body, i);
        match body.get(i) {
            Some(b',') => i += 1,
            Some(b']') => break,
            _ => return Err(format!("unterminated array at offset {i}")),
        }
    }
    let mut envelope = Vec::with_capacity(body.len() - (i - open));
    envelope.extend_from_slice(&body[..=open]);
    envelope.extend_from_slice(&body[i..]);
    Ok(Scanned { elements, envelope })
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The offset just past the string opening at `i` (escapes skipped, bytes not checked).
fn skip_string(body: &[u8], mut i: usize) -> Result<usize, String> {
    let start = i;
    i += 1;
    while let Some(&b) = body.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string at offset {start}"))
}

/// The offset just past the value starting at `i`.
fn skip_value(body: &[u8], mut i: usize) -> Result<usize, String> {
    match body.get(i) {
        Some(b'"') => skip_string(body, i),
        Some(b'{' | b'[') => {
            let start = i;
            let mut depth = 0usize;
            while let Some(&b) = body.get(i) {
                match b {
                    b'"' => {
                        i = skip_string(body, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            Err(format!("unterminated value at offset {start}"))
        }
        Some(_) => {
            let start = i;
            while body
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b']' | b'}') && !b.is_ascii_whitespace())
            {
                i += 1;
            }
            if i == start {
                return Err(format!("missing value at offset {start}"));
            }
            Ok(i)
        }
        None => Err("the body ends early".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_elements_whatever_their_bytes() {
        let body = b"{\"start\":0,\"results\":[{\"a\":\"x\xff\\\"]}\"},[1,{}], 7 ,\"s\"],\"_links\":{\"next\":\"n\"}}";
        let s = scan(body, "results").unwrap();
        assert_eq!(
            s.elements,
            [
                &b"{\"a\":\"x\xff\\\"]}\"}"[..],
                &b"[1,{}]"[..],
                &b"7"[..],
                &b"\"s\""[..]
            ]
        );
        let env: serde_json::Value = serde_json::from_slice(&s.envelope).unwrap();
        assert_eq!(
            env,
            serde_json::json!({"start":0,"results":[],"_links":{"next":"n"}})
        );
    }

    #[test]
    fn empty_arrays_and_other_keys() {
        let s = scan(b" { \"entities\" : [ ] , \"pagingInfo\":{}}", "entities").unwrap();
        assert!(s.elements.is_empty());
        let s = scan(b"{\"x\":{\"entities\":[1]},\"entities\":[2]}", "entities").unwrap();
        assert_eq!(s.elements, [&b"2"[..]]);
    }

    #[test]
    fn a_body_that_is_not_a_page_is_an_error() {
        for body in [
            &b""[..],
            b"<html>",
            b"[1,2]",
            b"{\"results\":3}",
            b"{\"other\":[]}",
            b"{\"results\":[{\"a\":1}",
            b"{\"results\":[\"abc",
            b"{\"results\":[1 2]}",
        ] {
            assert!(
                scan(body, "results").is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
