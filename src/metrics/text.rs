//! The text exposition format 0.0.4: writing metric families, and a tolerant reader of
//! sample lines (for carrying the last-success value over from the previous file).

use std::fmt::Write as _;

pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) samples: Vec<String>,
}

impl Family {
    pub(super) fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut line = String::from(self.name);
        if !labels.is_empty() {
            line.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{k}=\"{}\"", escape_label(v));
            }
            line.push('}');
        }
        line.push(' ');
        line.push_str(&format_value(value));
        self.samples.push(line);
    }
}

/// Label values escape `\`, `"` and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// `# HELP` text escapes `\` and newline.
pub(super) fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's `ParseFloat` spellings: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// One sample line of an exposition: name, labels in order, value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A tolerant reader of sample lines: comments and lines it cannot read are skipped (the file
/// may have been edited by hand; carrying over is best effort).
pub(crate) fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        loop {
            while chars
                .next_if(|(_, c)| c.is_whitespace() || *c == ',')
                .is_some()
            {}
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &r[start + 1..];
                break;
            }
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next()?;
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key.trim().to_string(), value));
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_read_back() {
        let nasty = "a\\b\"c\nd";
        let mut f = Family::new("x", "h");
        f.sample(&[("repository", nasty)], 1.0);
        assert_eq!(f.samples[0], r#"x{repository="a\\b\"c\nd"} 1"#);
        let s = parse_samples(&f.samples[0]);
        assert_eq!(
            s[0].labels,
            vec![("repository".to_string(), nasty.to_string())]
        );
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn values_use_prometheus_spellings() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1_732_400_000.123), "1732400000.123");
    }

    #[test]
    fn the_parser_skips_what_it_cannot_read() {
        let s = parse_samples(
            "# HELP a b\n\nbroken{x=\"1\" 2\nplain 4 1700000000000\nspaced{ a = \"1\" , b=\"2\",} 5\nbad value\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "plain");
        assert_eq!(s[0].value, 4.0);
        assert_eq!(s[1].labels.len(), 2);
    }
}
