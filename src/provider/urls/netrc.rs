//! A netrc-style credentials file for `--provider urls`: `machine HOST login USER password
//! TOKEN` entries (any whitespace between tokens, newlines included), an optional `default`
//! entry, `account` ignored, `macdef` bodies skipped up to the next blank line — the format of
//! curl and inetutils' ftp, which git's own netrc helper also reads.
//!
//! Why hand-written: the format is a dozen lines of tokenising, the netrc crates on crates.io are
//! either unmaintained or pull in a parser-combinator stack, and this file holds passwords: no
//! error here ever quotes a token (only the line number and the keyword), which a general
//! parser's error messages do not promise.

use std::collections::BTreeMap;

use crate::secret::Secret;

/// One entry's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub login: String,
    pub password: Secret,
}

/// A parsed netrc: the first entry per host wins (as in curl), and the `default` entry, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Netrc {
    machines: BTreeMap<String, Login>,
    default: Option<Login>,
}

/// What is wrong with the file, with the 1-based line; never a token's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct NetrcError {
    pub line: usize,
    pub message: String,
}

impl Netrc {
    /// The credentials for `host` (case-insensitive), else the `default` entry's.
    pub fn lookup(&self, host: &str) -> Option<&Login> {
        self.machines
            .get(&host.to_ascii_lowercase())
            .or(self.default.as_ref())
    }

    /// How many hosts have an entry (for `login`'s summary).
    pub fn hosts(&self) -> usize {
        self.machines.len() + usize::from(self.default.is_some())
    }

    pub fn parse(text: &str) -> Result<Netrc, NetrcError> {
        let mut tokens = Tokens::new(text);
        let mut netrc = Netrc::default();
        // The entry being read: its host (`None` for `default`) and fields so far.
        let mut current: Option<Entry> = None;
        while let Some((line, word)) = tokens.next() {
            match word {
                "machine" | "default" => {
                    if let Some(done) = current.take() {
                        done.finish(&mut netrc)?;
                    }
                    let host = match word {
                        "machine" => Some(tokens.value(line, "machine")?.to_ascii_lowercase()),
                        _ => None,
                    };
                    current = Some(Entry {
                        line,
                        host,
                        login: None,
                        password: None,
                    });
                }
                "login" | "password" | "account" => {
                    let value = tokens.value(line, word)?;
                    let Some(entry) = current.as_mut() else {
                        return Err(NetrcError {
                            line,
                            message: format!("`{word}` before any `machine` or `default`"),
                        });
                    };
                    match word {
                        "login" => entry.login = Some(value.to_owned()),
                        "password" => entry.password = Some(Secret::new(value)),
                        _ => {}
                    }
                }
                "macdef" => {
                    tokens.value(line, "macdef")?;
                    tokens.skip_macro();
                }
                _ => {
                    return Err(NetrcError {
                        line,
                        message: "unexpected word (expected machine, default, login, password, \
                                  account or macdef)"
                            .into(),
                    });
                }
            }
        }
        if let Some(done) = current.take() {
            done.finish(&mut netrc)?;
        }
        Ok(netrc)
    }
}

struct Entry {
    line: usize,
    host: Option<String>,
    login: Option<String>,
    password: Option<Secret>,
}

impl Entry {
    fn finish(self, netrc: &mut Netrc) -> Result<(), NetrcError> {
        let what = match &self.host {
            Some(_) => "`machine` entry",
            None => "`default` entry",
        };
        let (Some(login), Some(password)) = (self.login, self.password) else {
            return Err(NetrcError {
                line: self.line,
                message: format!("the {what} needs both `login` and `password`"),
            });
        };
        let found = Login { login, password };
        match self.host {
            Some(host) => {
                netrc.machines.entry(host).or_insert(found);
            }
            None => netrc.default = netrc.default.take().or(Some(found)),
        }
        Ok(())
    }
}

/// Whitespace-separated words with their line numbers; `#` at the start of a word starts a
/// comment to the end of the line.
struct Tokens<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
    words: std::str::SplitWhitespace<'a>,
    line: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Tokens {
            lines: text.lines().enumerate(),
            words: "".split_whitespace(),
            line: 0,
        }
    }

    fn next(&mut self) -> Option<(usize, &'a str)> {
        loop {
            match self.words.next() {
                Some(w) if w.starts_with('#') => self.words = "".split_whitespace(),
                Some(w) => return Some((self.line, w)),
                None => {
                    let (n, text) = self.lines.next()?;
                    self.line = n + 1;
                    self.words = text.split_whitespace();
                }
            }
        }
    }

    /// The word after a keyword, which must be on some later position of the file.
    fn value(&mut self, line: usize, keyword: &str) -> Result<&'a str, NetrcError> {
        self.next().map(|(_, w)| w).ok_or_else(|| NetrcError {
            line,
            message: format!("`{keyword}` has no value"),
        })
    }

    /// Skips a `macdef` body: the rest of its line and every line up to a blank one.
    fn skip_macro(&mut self) {
        self.words = "".split_whitespace();
        for (n, text) in self.lines.by_ref() {
            self.line = n + 1;
            if text.trim().is_empty() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_default_comments_and_macros() {
        let n = Netrc::parse(
            "# backups\nmachine git.example.com\n  login backup password s3cr3t\n\
             machine Other.Example login a password b account x\n\
             macdef init\ncd /\nls\n\n\
             machine git.example.com login second password ignored\n\
             default login anon password guest\n",
        )
        .unwrap();
        let got = n.lookup("git.example.com").unwrap();
        assert_eq!(
            (got.login.as_str(), got.password.expose()),
            ("backup", "s3cr3t")
        );
        assert_eq!(n.lookup("other.example").unwrap().login, "a");
        assert_eq!(n.lookup("elsewhere").unwrap().login, "anon");
        assert_eq!(n.hosts(), 3);
        let none = Netrc::parse("machine h login u password p").unwrap();
        assert!(none.lookup("other").is_none());
        assert_eq!(Netrc::parse("  \n# only a comment\n").unwrap().hosts(), 0);
    }

    #[test]
    fn errors_name_the_line_and_never_a_value() {
        for (text, line, needle) in [
            ("machine h login u", 1, "both `login` and `password`"),
            ("\n\nlogin u password hunter2", 3, "before any `machine`"),
            ("machine h login u password", 1, "`password` has no value"),
            (
                "machine h\nlogin u\npassword hunter2\nport 22",
                4,
                "unexpected word",
            ),
        ] {
            let e = Netrc::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }
}
