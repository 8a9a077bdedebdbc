//! Which snapshots a keep policy keeps: restic's `forget` rules, pure, on dates.
//!
//! A snapshot here is a date folder, so there is one a day at most and restic's hourly rule
//! has nothing to do; a snapshot's "time" is its date. The rules (NOTES §12, restic
//! `internal/restic/snapshot_policy.go`):
//! - snapshots are walked newest first and every rule sees every snapshot; a snapshot is kept
//!   when any rule keeps it (the results are ORed);
//! - a count rule keeps the newest snapshot of each period (`last`: each snapshot; `daily`:
//!   each date; `weekly`: each ISO week, Monday to Sunday, so 2025-12-29 is in 2026-W01;
//!   `monthly`, `yearly`: calendar month and year) until it has kept `n`; only periods that
//!   hold a snapshot count ("the last 7 days that have a snapshot", not the last 7 days);
//! - `unlimited` never runs out;
//! - restic ≥ 0.16's extension: a rule that still has count left when it reaches the very
//!   oldest snapshot keeps that one too ("oldest monthly"), so a young backup history keeps
//!   its first snapshot rather than losing it the day a new month starts. We follow it,
//!   since restic users expect it, and name it in the reasons.
//!
//! A policy with no rule (or only zeros) is empty; the caller refuses it, as restic does,
//! rather than remove everything.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

/// How many periods a rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    N(u32),
    Unlimited,
}

impl Count {
    fn is_zero(self) -> bool {
        self == Count::N(0)
    }
}

impl FromStr for Count {
    type Err = String;

    /// `N`, or `unlimited` (restic's spelling; `-1` too).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "unlimited" | "-1" => Ok(Count::Unlimited),
            n => n
                .parse::<u32>()
                .map(Count::N)
                .map_err(|_| "expected a number of snapshots or `unlimited`".to_string()),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// One keep rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    Last,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::Last,
        Rule::Daily,
        Rule::Weekly,
        Rule::Monthly,
        Rule::Yearly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    /// The period `date` falls in; `index` (newest first) for `last`, where each snapshot is
    /// its own period.
    fn bucket(self, date: NaiveDate, index: usize) -> i64 {
        let (y, m, d) = (
            i64::from(date.year()),
            i64::from(date.month()),
            i64::from(date.day()),
        );
        match self {
            Rule::Last => index as i64,
            Rule::Daily => y * 10_000 + m * 100 + d,
            Rule::Weekly => {
                let w = date.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Rule::Monthly => y * 100 + m,
            Rule::Yearly => y,
        }
    }
}

/// Why a snapshot is kept: a rule, and whether only as that rule's oldest-snapshot extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    pub rule: Rule,
    pub oldest: bool,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.oldest {
            f.write_str("oldest ")?;
        }
        f.write_str(self.rule.as_str())
    }
}

/// `--keep-last/-daily/-weekly/-monthly/-yearly`; `None` = the rule is not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<Count>,
    pub daily: Option<Count>,
    pub weekly: Option<Count>,
    pub monthly: Option<Count>,
    pub yearly: Option<Count>,
}

impl Policy {
    pub fn get(&self, rule: Rule) -> Option<Count> {
        match rule {
            Rule::Last => self.last,
            Rule::Daily => self.daily,
            Rule::Weekly => self.weekly,
            Rule::Monthly => self.monthly,
            Rule::Yearly => self.yearly,
        }
    }

    /// No rule that keeps anything: applying it would remove every snapshot.
    pub fn is_empty(&self) -> bool {
        Rule::ALL
            .iter()
            .all(|r| self.get(*r).is_none_or(Count::is_zero))
    }

    /// `daily 7, weekly 4` — for messages and the table's header line.
    pub fn describe(&self) -> String {
        Rule::ALL
            .iter()
            .filter_map(|r| self.get(*r).map(|c| format!("{} {c}", r.as_str())))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The dates kept, each with the rules that keep it (in [`Rule::ALL`] order). `dates`
    /// may come in any order; duplicates count once.
    pub fn apply(&self, dates: &[NaiveDate]) -> BTreeMap<NaiveDate, Vec<Reason>> {
        let mut newest_first = dates.to_vec();
        newest_first.sort_unstable_by(|a, b| b.cmp(a));
        newest_first.dedup();
        let mut kept: BTreeMap<NaiveDate, Vec<Reason>> = BTreeMap::new();
        for rule in Rule::ALL {
            let Some(mut left) = self.get(rule) else {
                continue;
            };
            let mut last_bucket = None;
            let oldest = newest_first.len().saturating_sub(1);
            for (i, &date) in newest_first.iter().enumerate() {
                if left.is_zero() {
                    break;
                }
                let bucket = rule.bucket(date, i);
                let new_period = last_bucket != Some(bucket);
                if new_period || i == oldest {
                    kept.entry(date).or_default().push(Reason {
                        rule,
                        oldest: !new_period,
                    });
                    last_bucket = Some(bucket);
                    if let Count::N(n) = &mut left {
                        *n -= 1;
                    }
                }
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// 60 daily snapshots, 2025-11-15 (a Saturday, ISO week 2025-W46) to 2026-01-13 (a
    /// Tuesday, 2026-W03), across a year end where the ISO year starts early: 2025-12-29 (a
    /// Monday) is 2026-W01.
    fn sixty_days() -> Vec<NaiveDate> {
        let first = d("2025-11-15");
        (0..60).map(|n| first + chrono::Days::new(n)).collect()
    }

    fn policy(spec: &str) -> Policy {
        let mut p = Policy::default();
        for part in spec.split_whitespace() {
            let (rule, n) = part.split_once('=').unwrap();
            let n = Some(n.parse().unwrap());
            match rule {
                "last" => p.last = n,
                "daily" => p.daily = n,
                "weekly" => p.weekly = n,
                "monthly" => p.monthly = n,
                "yearly" => p.yearly = n,
                _ => panic!("{rule}"),
            }
        }
        p
    }

    fn render(kept: &BTreeMap<NaiveDate, Vec<Reason>>) -> Vec<String> {
        kept.iter()
            .rev()
            .map(|(date, why)| {
                let why: Vec<String> = why.iter().map(Reason::to_string).collect();
                format!("{date} {}", why.join(","))
            })
            .collect()
    }

    /// Expectations worked out by hand from the calendar (see `sixty_days`), newest first.
    #[test]
    fn sixty_daily_snapshots_keep_what_restic_would() {
        let table: &[(&str, &[&str])] = &[
            (
                "last=3",
                &["2026-01-13 last", "2026-01-12 last", "2026-01-11 last"],
            ),
            (
                "daily=5",
                &[
                    "2026-01-13 daily",
                    "2026-01-12 daily",
                    "2026-01-11 daily",
                    "2026-01-10 daily",
                    "2026-01-09 daily",
                ],
            ),
            // Sundays end ISO weeks; the week of 2025-12-29..2026-01-04 is 2026-W01.
            (
                "weekly=4",
                &[
                    "2026-01-13 weekly",
                    "2026-01-11 weekly",
                    "2026-01-04 weekly",
                    "2025-12-28 weekly",
                ],
            ),
            // Ten weeks hold snapshots (W46..W52 of 2025, W01..W03 of 2026): ten kept, the
            // budget is spent on 2025-11-16 and the oldest (Saturday 2025-11-15) goes.
            (
                "weekly=10",
                &[
                    "2026-01-13 weekly",
                    "2026-01-11 weekly",
                    "2026-01-04 weekly",
                    "2025-12-28 weekly",
                    "2025-12-21 weekly",
                    "2025-12-14 weekly",
                    "2025-12-07 weekly",
                    "2025-11-30 weekly",
                    "2025-11-23 weekly",
                    "2025-11-16 weekly",
                ],
            ),
            ("monthly=2", &["2026-01-13 monthly", "2025-12-31 monthly"]),
            (
                "monthly=12",
                &[
                    "2026-01-13 monthly",
                    "2025-12-31 monthly",
                    "2025-11-30 monthly",
                    "2025-11-15 oldest monthly",
                ],
            ),
            ("yearly=1", &["2026-01-13 yearly"]),
            (
                "yearly=3",
                &[
                    "2026-01-13 yearly",
                    "2025-12-31 yearly",
                    "2025-11-15 oldest yearly",
                ],
            ),
            (
                "daily=2 weekly=2 monthly=2",
                &[
                    "2026-01-13 daily,weekly,monthly",
                    "2026-01-12 daily",
                    "2026-01-11 weekly",
                    "2025-12-31 monthly",
                ],
            ),
            (
                "last=1 daily=3 weekly=3 monthly=3 yearly=1",
                &[
                    "2026-01-13 last,daily,weekly,monthly,yearly",
                    "2026-01-12 daily",
                    "2026-01-11 daily,weekly",
                    "2026-01-04 weekly",
                    "2025-12-31 monthly",
                    "2025-11-30 monthly",
                ],
            ),
            ("daily=0 weekly=0", &[]),
        ];
        for (spec, want) in table {
            let got = render(&policy(spec).apply(&sixty_days()));
            assert_eq!(got, *want, "{spec}");
        }
        // One more than there are weeks: the oldest is kept too.
        let mut eleven = render(&policy("weekly=10").apply(&sixty_days()));
        eleven.push("2025-11-15 oldest weekly".into());
        assert_eq!(render(&policy("weekly=11").apply(&sixty_days())), eleven);
        let all = policy("daily=unlimited").apply(&sixty_days());
        assert_eq!(all.len(), 60);
        assert_eq!(policy("last=100").apply(&sixty_days()).len(), 60);
    }

    /// restic's documented example: one backup each Sunday for 12 weeks, `--keep-daily 4`
    /// keeps the last four Sundays (days without a snapshot do not count).
    #[test]
    fn only_periods_with_a_snapshot_count() {
        let sundays: Vec<NaiveDate> = (0..12)
            .map(|w| d("2026-09-06") + chrono::Days::new(7 * w))
            .collect();
        let got = render(&policy("daily=4").apply(&sundays));
        assert_eq!(
            got,
            [
                "2026-11-22 daily",
                "2026-11-15 daily",
                "2026-11-08 daily",
                "2026-11-01 daily",
            ]
        );
        // Order and duplicates of the input do not matter.
        let mut shuffled = sundays.clone();
        shuffled.reverse();
        shuffled.push(sundays[3]);
        assert_eq!(render(&policy("daily=4").apply(&shuffled)), got);
    }

    #[test]
    fn empty_policies_and_counts_parse() {
        assert!(Policy::default().is_empty());
        assert!(policy("daily=0 yearly=0").is_empty());
        assert!(!policy("daily=0 yearly=1").is_empty());
        assert!(!policy("last=unlimited").is_empty());
        assert_eq!("unlimited".parse::<Count>(), Ok(Count::Unlimited));
        assert_eq!("-1".parse::<Count>(), Ok(Count::Unlimited));
        assert_eq!("7".parse::<Count>(), Ok(Count::N(7)));
        assert!("seven".parse::<Count>().is_err());
        assert!("-2".parse::<Count>().is_err());
        assert_eq!(
            policy("daily=7 monthly=unlimited").describe(),
            "daily 7, monthly unlimited"
        );
    }
}
