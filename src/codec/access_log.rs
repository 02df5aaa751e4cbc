//! Web-server access logs: nginx/Apache "combined" lines with the visitor id as one more
//! quoted field at the end, parsed into rows and categorized into website actions by path rules.
//!
//! ```text
//! 203.0.113.9 - - [25/Nov/2026:10:00:00 +0000] "GET /article/101?ref=x HTTP/1.1" 200 5120 "https://example.com/" "Mozilla/5.0" "42"
//! ```
//!
//! The row has `remote_addr`, `remote_user`, `event_time` (a timestamp), `method`, `url` (the
//! request target), `path` (without the query), `protocol`, `status`, `bytes` (`-` is 0),
//! `referrer` and `user_agent` (`-` is null), `visitor_id` (a long when it is an integer, else
//! the text; `-` is null), `event_type` and the fields the matching rule captured.
//!
//! Rules are tried in order; the first whose pattern matches the whole path wins. A pattern is
//! literal segments and `{field}` captures of one segment: `/article/{content_id}` matches
//! `/article/101` and sets `content_id = 101` (a long when the segment is an integer). A trailing
//! `/*` matches any rest. A path no rule matches gets `event_type = "other"`.

use super::{CodecError, CodecErrorKind};
use crate::record::{Row, TimeUnit, Value};

/// One path rule: a pattern and the action (`event_type`) its requests are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    segments: Vec<Segment>,
    any_rest: bool,
    event_type: String,
    pattern: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

impl PathRule {
    /// A rule; the error says what is wrong with the pattern.
    pub fn new(pattern: &str, event_type: &str) -> Result<PathRule, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path pattern `{pattern}` must start with `/`"));
        }
        if event_type.is_empty() {
            return Err(format!("path pattern `{pattern}` needs a non-empty `event_type`"));
        }
        let (body, any_rest) = match pattern.strip_suffix("/*") {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        let mut segments = Vec::new();
        for part in body.split('/').skip(1) {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("path pattern `{pattern}`: `{{{name}}}` is not a field name"));
                }
                segments.push(Segment::Capture(name.to_owned()));
            } else if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "path pattern `{pattern}`: write a capture as a whole segment (`/{{name}}`) and `*` only as a last `/*`"
                ));
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(PathRule { segments, any_rest, event_type: event_type.to_owned(), pattern: pattern.to_owned() })
    }

    /// The captured fields when `path` matches.
    fn matches(&self, path: &str) -> Option<Vec<(&str, Value)>> {
        let mut parts = path.split('/').skip(1);
        let mut captured = Vec::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(text) if text == part => {}
                Segment::Literal(_) => return None,
                Segment::Capture(_) if part.is_empty() => return None,
                Segment::Capture(name) => captured.push((name.as_str(), number_or_text(part))),
            }
        }
        let rest: Vec<&str> = parts.collect();
        // `/article/101/` matches `/article/{id}` (a trailing slash).
        let rest_empty = rest.is_empty() || rest == [""];
        (self.any_rest || rest_empty).then_some(captured)
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

fn number_or_text(text: &str) -> Value {
    match text.parse::<i64>() {
        Ok(n) => Value::Long(n),
        Err(_) => Value::String(text.into()),
    }
}

/// Parses access-log lines and categorizes them by path rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLogParser {
    rules: Vec<PathRule>,
}

impl AccessLogParser {
    /// A parser with rules (tried in order).
    pub fn new(rules: Vec<PathRule>) -> Self {
        AccessLogParser { rules }
    }

    /// The fields any rule can capture (for the topology's field checks).
    pub fn captured_fields(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .rules
            .iter()
            .flat_map(|r| r.segments.iter())
            .filter_map(|s| match s {
                Segment::Capture(name) => Some(name.as_str()),
                Segment::Literal(_) => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// One line into a row (see the module docs).
    pub fn parse(&self, bytes: &[u8]) -> Result<Row, CodecError> {
        let line = std::str::from_utf8(bytes).map_err(|_| CodecError::new(CodecErrorKind::InvalidUtf8))?.trim_end();
        let bad = |what: &str| {
            CodecError::new(CodecErrorKind::InvalidValue(format!(
                "not a combined access-log line with a visitor id ({what}): `{}`",
                preview(line)
            )))
        };
        let mut rest = line;
        let remote_addr = word(&mut rest).ok_or_else(|| bad("no client address"))?;
        let _ident = word(&mut rest).ok_or_else(|| bad("no ident"))?;
        let remote_user = word(&mut rest).ok_or_else(|| bad("no user"))?;
        let time = bracketed(&mut rest).ok_or_else(|| bad("no [time]"))?;
        let request = quoted(&mut rest).ok_or_else(|| bad("no \"request\""))?;
        let status = word(&mut rest).and_then(|s| s.parse::<i32>().ok()).ok_or_else(|| bad("no status"))?;
        let bytes_sent = match word(&mut rest).ok_or_else(|| bad("no byte count"))? {
            "-" => 0,
            n => n.parse::<i64>().map_err(|_| bad("byte count is not a number"))?,
        };
        let referrer = quoted(&mut rest).ok_or_else(|| bad("no \"referrer\""))?;
        let user_agent = quoted(&mut rest).ok_or_else(|| bad("no \"user agent\""))?;
        let visitor = quoted(&mut rest).ok_or_else(|| bad("no \"visitor id\" after the user agent"))?;
        if !rest.trim().is_empty() {
            return Err(bad("text after the visitor id"));
        }
        let event_time = chrono::DateTime::parse_from_str(&time, "%d/%b/%Y:%H:%M:%S %z")
            .map_err(|_| bad("time is not like 25/Nov/2026:10:00:00 +0000"))?
            .timestamp_millis();
        let mut request_parts = request.splitn(3, ' ');
        let method = request_parts.next().unwrap_or_default().to_owned();
        let url = request_parts.next().ok_or_else(|| bad("request has no target"))?.to_owned();
        let protocol = request_parts.next().map(|p| Value::String(p.into())).unwrap_or(Value::Null);
        let path = url.split(['?', '#']).next().unwrap_or_default().to_owned();

        let optional = |text: String| if text == "-" { Value::Null } else { Value::String(text) };
        let mut row = Row::with_capacity(16)
            .with("remote_addr", Value::String(remote_addr.into()))
            .with("remote_user", optional(remote_user.to_owned()))
            .with("event_time", Value::Timestamp { value: event_time, unit: TimeUnit::Millis })
            .with("method", Value::String(method))
            .with("url", Value::String(url))
            .with("path", Value::String(path.clone()))
            .with("protocol", protocol)
            .with("status", Value::Int(status))
            .with("bytes", Value::Long(bytes_sent))
            .with("referrer", optional(referrer))
            .with("user_agent", optional(user_agent))
            .with("visitor_id", if visitor == "-" { Value::Null } else { number_or_text(&visitor) });
        let matched = self.rules.iter().find_map(|rule| rule.matches(&path).map(|captured| (rule, captured)));
        for name in self.captured_fields() {
            row.push(name, Value::Null);
        }
        match matched {
            Some((rule, captured)) => {
                row.push("event_type", Value::String(rule.event_type.as_str().into()));
                for (name, value) in captured {
                    row.set(name, value);
                }
            }
            None => row.push("event_type", Value::String("other".into())),
        }
        Ok(row)
    }
}

fn preview(line: &str) -> String {
    match line.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// The next space-separated word.
fn word<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let text = rest.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(' ').unwrap_or(text.len());
    *rest = &text[end..];
    Some(&text[..end])
}

/// The next `[...]` field.
fn bracketed(rest: &mut &str) -> Option<String> {
    let text = rest.trim_start().strip_prefix('[')?;
    let end = text.find(']')?;
    let inner = text[..end].to_owned();
    *rest = &text[end + 1..];
    Some(inner)
}

/// The next `"..."` field (`\"` and `\\` escaped, as nginx and Apache write them).
fn quoted(rest: &mut &str) -> Option<String> {
    let text = rest.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => return None,
            },
            '"' => {
                *rest = &text[at + 1..];
                return Some(out);
            }
            other => out.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> AccessLogParser {
        AccessLogParser::new(vec![
            PathRule::new("/article/{content_id}", "page_view").unwrap(),
            PathRule::new("/go/{ad_id}", "affiliate_click").unwrap(),
            PathRule::new("/static/*", "asset").unwrap(),
        ])
    }

    #[test]
    fn parses_a_combined_line_with_a_visitor_id_and_categorizes_it() {
        let line = br#"203.0.113.9 - - [25/Nov/2026:10:00:00 +0100] "GET /article/101?ref=x HTTP/1.1" 200 5120 "https://example.com/a \"b\"" "Mozilla/5.0 (X11)" "42""#;
        let row = parser().parse(line).unwrap();
        assert_eq!(row.get("event_type"), Some(&Value::String("page_view".into())));
        assert_eq!(row.get("content_id"), Some(&Value::Long(101)));
        assert_eq!(row.get("ad_id"), Some(&Value::Null));
        assert_eq!(row.get("visitor_id"), Some(&Value::Long(42)));
        assert_eq!(row.get("path"), Some(&Value::String("/article/101".into())));
        assert_eq!(row.get("url"), Some(&Value::String("/article/101?ref=x".into())));
        assert_eq!(row.get("referrer"), Some(&Value::String("https://example.com/a \"b\"".into())));
        assert_eq!(row.get("status"), Some(&Value::Int(200)));
        // 10:00 at +01:00 is 09:00 UTC.
        assert_eq!(row.get("event_time").and_then(Value::epoch_millis), Some(1_795_597_200_000));
    }

    #[test]
    fn unmatched_paths_are_other_and_rest_patterns_match_deeper_paths() {
        let other = br#"::1 - bob [25/Nov/2026:10:00:00 +0000] "POST /api/x HTTP/2.0" 404 - "-" "-" "-""#;
        let row = parser().parse(other).unwrap();
        assert_eq!(row.get("event_type"), Some(&Value::String("other".into())));
        assert_eq!(row.get("bytes"), Some(&Value::Long(0)));
        assert_eq!(row.get("referrer"), Some(&Value::Null));
        assert_eq!(row.get("visitor_id"), Some(&Value::Null));
        let asset = br#"::1 - - [25/Nov/2026:10:00:00 +0000] "GET /static/css/site.css HTTP/1.1" 200 10 "-" "-" "7""#;
        assert_eq!(parser().parse(asset).unwrap().get("event_type"), Some(&Value::String("asset".into())));
        let slash = br#"::1 - - [25/Nov/2026:10:00:00 +0000] "GET /article/7/ HTTP/1.1" 200 10 "-" "-" "7""#;
        assert_eq!(parser().parse(slash).unwrap().get("content_id"), Some(&Value::Long(7)));
        let deeper = br#"::1 - - [25/Nov/2026:10:00:00 +0000] "GET /article/7/comments HTTP/1.1" 200 10 "-" "-" "7""#;
        assert_eq!(parser().parse(deeper).unwrap().get("event_type"), Some(&Value::String("other".into())));
    }

    #[test]
    fn bad_lines_say_what_is_missing() {
        let cases: [(&[u8], &str); 4] = [
            (b"garbage", "no ident"),
            (br#"1.2.3.4 - - [25/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua""#, "no \"visitor id\""),
            (br#"1.2.3.4 - - [yesterday] "GET / HTTP/1.1" 200 1 "-" "ua" "1""#, "time is not like"),
            (br#"1.2.3.4 - - [25/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" OK 1 "-" "ua" "1""#, "no status"),
        ];
        for (line, expected) in cases {
            let message = parser().parse(line).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PathRule::new("article/{id}", "x").unwrap_err().contains("must start with `/`"));
        assert!(PathRule::new("/a{id}", "x").unwrap_err().contains("whole segment"));
        assert!(PathRule::new("/a/{}", "x").unwrap_err().contains("not a field name"));
    }
}
