//! Text from outside (repository names, server messages, manifests read back) on its way to a
//! terminal or a text log line.
//!
//! A name or an error message is data: it must not move the cursor, recolour the screen,
//! overwrite a line (`\r`) or start a new one that looks like a log line of ours (`\n`). So
//! every control character is shown escaped (`\x1b`, `\r`, `\n`, `\u{9b}`), and nothing else
//! changes. JSON log lines need none of this: serde escapes them already.
//!
//! Text a *server* sent (an error body, an OAuth `error_description`) is also cut short by
//! [`quote`]: it can be any length, and one error line must stay one readable line.

use std::borrow::Cow;

/// Characters of server-sent text [`quote`] keeps: enough for any real error message
/// (Bitbucket's are one sentence), short enough for one log line.
pub const MAX_QUOTED_CHARS: usize = 300;

/// Server-sent `s` as it may appear in an error: trimmed, control characters escaped, and cut
/// after [`MAX_QUOTED_CHARS`] characters (escapes count by their shown length) with `…`.
pub fn quote(s: &str) -> String {
    let s = s.trim();
    let mut out = String::new();
    let mut shown = 0;
    for (i, c) in s.char_indices() {
        if shown >= MAX_QUOTED_CHARS {
            if !s[i..].trim().is_empty() {
                out.truncate(out.trim_end().len());
                out.push('…');
            }
            break;
        }
        let before = out.len();
        push_escaped(&mut out, c);
        shown += out[before..].chars().count();
    }
    out
}

/// `s` with every control character (C0, DEL, C1) escaped; borrowed when there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 && c.is_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// One formatted log line (ending in `\n`) made safe: control characters escaped except the
/// final newline and, when `keep_colour`, the ESC of the formatter's own colour codes (field
/// values have had their ESC escaped by `tracing-subscriber` already, so an ESC still present
/// is the formatter's).
pub fn escape_log_line(line: &[u8], keep_colour: bool) -> Cow<'_, [u8]> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let needs = body
        .iter()
        .any(|&b| (b < 0x20 && !(keep_colour && b == 0x1b)) || b == 0x7f)
        || std::str::from_utf8(body)
            .is_ok_and(|s| s.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)));
    if !needs {
        return Cow::Borrowed(line);
    }
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if keep_colour && c == '\u{1b}' {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
    }
    let mut bytes = out.into_bytes();
    if line.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    Cow::Owned(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert!(matches!(escape("acme/api"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\x1b[31mred\r\nb\u{9b}c\x07"),
            "a\\x1b[31mred\\r\\nb\\u{9b}c\\x07"
        );
        assert_eq!(escape("ünïcode stays"), "ünïcode stays");
    }

    #[test]
    fn quoted_server_text_is_escaped_and_cut_on_a_character_boundary() {
        assert_eq!(quote("  short message \n"), "short message");
        let long = "é".repeat(MAX_QUOTED_CHARS + 50);
        let q = quote(&long);
        assert_eq!(q.chars().count(), MAX_QUOTED_CHARS + 1, "{q}");
        assert!(q.ends_with('…') && q.starts_with("éé"), "{q}");
        // Exactly the limit: nothing cut, no ellipsis.
        let exact = "x".repeat(MAX_QUOTED_CHARS);
        assert_eq!(quote(&exact), exact);
        // Escapes count by their shown length, so control characters cannot stretch the line.
        let q = quote(&"\x1b".repeat(MAX_QUOTED_CHARS));
        assert!(q.chars().count() <= MAX_QUOTED_CHARS + 4, "{q}");
        assert!(!q.contains('\x1b') && q.ends_with('…'), "{q}");
    }

    #[test]
    fn a_log_line_cannot_forge_another() {
        let line = b"12:00:00 INFO repo=acme/x\nERROR forged\r\x1b[2K\n";
        assert_eq!(
            &*escape_log_line(line, false),
            b"12:00:00 INFO repo=acme/x\\nERROR forged\\r\\x1b[2K\n"
        );
        // The formatter's own colour codes survive on a terminal.
        let coloured = b"\x1b[32mINFO\x1b[0m a\rb\n";
        assert_eq!(
            &*escape_log_line(coloured, true),
            b"\x1b[32mINFO\x1b[0m a\\rb\n"
        );
        assert!(matches!(
            escape_log_line(b"plain\n", false),
            Cow::Borrowed(_)
        ));
    }
}
