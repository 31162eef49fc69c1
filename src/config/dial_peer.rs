//! Cisco-style dial-peer `destination-pattern` matching (pure functions).
//!
//! Syntax follows Cisco IOS `destination-pattern` for the digits a gateway sees:
//! - `0`–`9`, `*`, `#`: that digit;
//! - `+` as the first character: a literal E.164 plus sign;
//! - `.`: any one digit;
//! - `[0-9]`, `[2-4,7]`, `[^01]`: one digit from the set (ranges, lists, `^` negation);
//! - `T` as the last character: zero or more further digits (Cisco's variable-length
//!   "interdigit timeout" terminator).
//!
//! A pattern without `T` matches numbers of exactly its length. Among peers that match, the
//! most specific wins (the most explicit digits, then the fewest wildcards), then the lowest
//! `preference` (Cisco: 0 is most preferred), then file order.

use std::fmt;

/// One position of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// This exact character (`0-9`, `*`, `#`, or a leading `+`).
    Literal(char),
    /// Any one digit (`.`).
    AnyDigit,
    /// One digit from the set; `set[d]` true when digit `d` is allowed.
    Set([bool; 10]),
}

/// A compiled `destination-pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPattern {
    source: String,
    atoms: Vec<Atom>,
    /// Trailing `T`: any number (0..) of further digits.
    open_ended: bool,
}

/// Why a pattern does not compile; `position` is the 0-based character index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.position + 1)
    }
}

impl std::error::Error for PatternError {}

impl DestinationPattern {
    /// Compile a pattern. Errors: empty pattern, an unknown character, an unclosed or empty
    /// `[...]`, a bad range, `T` anywhere but last, `+` anywhere but first.
    pub fn parse(pattern: &str) -> Result<DestinationPattern, PatternError> {
        let err = |position: usize, message: &str| PatternError {
            position,
            message: message.to_string(),
        };
        let chars: Vec<char> = pattern.chars().collect();
        if chars.is_empty() {
            return Err(err(0, "empty destination-pattern"));
        }
        if chars.len() > 64 {
            return Err(err(64, "destination-pattern longer than 64 characters"));
        }
        let mut atoms = Vec::new();
        let mut open_ended = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '0'..='9' | '*' | '#' => atoms.push(Atom::Literal(c)),
                '+' if i == 0 => atoms.push(Atom::Literal('+')),
                '+' => {
                    return Err(err(
                        i,
                        "`+` is only allowed as the first character (E.164 prefix)",
                    ))
                }
                '.' => atoms.push(Atom::AnyDigit),
                'T' | 't' => {
                    if i + 1 != chars.len() {
                        return Err(err(i, "`T` must be the last character"));
                    }
                    open_ended = true;
                }
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|&c| c == ']')
                        .map(|p| p + i)
                        .ok_or_else(|| err(i, "unclosed `[`"))?;
                    atoms.push(Atom::Set(parse_set(&chars[i + 1..close], i + 1)?));
                    i = close;
                }
                _ => return Err(err(i, &format!("unexpected character `{c}`"))),
            }
            i += 1;
        }
        Ok(DestinationPattern {
            source: pattern.to_string(),
            atoms,
            open_ended,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `number` (digits, optionally a leading `+`) matches the whole pattern.
    pub fn matches(&self, number: &str) -> bool {
        let chars: Vec<char> = number.chars().collect();
        if chars.len() < self.atoms.len() || (!self.open_ended && chars.len() != self.atoms.len()) {
            return false;
        }
        let head_ok = self.atoms.iter().zip(&chars).all(|(atom, &c)| match atom {
            Atom::Literal(l) => *l == c,
            Atom::AnyDigit => c.is_ascii_digit(),
            Atom::Set(set) => c.to_digit(10).is_some_and(|d| set[d as usize]),
        });
        head_ok
            && chars[self.atoms.len()..]
                .iter()
                .all(|c| c.is_ascii_digit() || *c == '*' || *c == '#')
    }

    /// Specificity for choosing among matching peers: (explicit characters, -wildcards, closed).
    pub fn specificity(&self) -> (usize, isize, bool) {
        let literals = self
            .atoms
            .iter()
            .filter(|a| matches!(a, Atom::Literal(_)))
            .count();
        let wild = self.atoms.len() - literals;
        (literals, -(wild as isize), !self.open_ended)
    }
}

fn parse_set(body: &[char], offset: usize) -> Result<[bool; 10], PatternError> {
    let err = |position: usize, message: &str| PatternError {
        position,
        message: message.to_string(),
    };
    let (negate, body, offset) = match body.first() {
        Some('^') => (true, &body[1..], offset + 1),
        _ => (false, body, offset),
    };
    if body.is_empty() {
        return Err(err(offset, "empty `[]` digit set"));
    }
    let mut set = [false; 10];
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == ',' {
            i += 1;
            continue;
        }
        let lo = c
            .to_digit(10)
            .ok_or_else(|| err(offset + i, &format!("`{c}` is not a digit in `[]`")))?;
        let mut hi = lo;
        if body.get(i + 1) == Some(&'-') {
            let h = body
                .get(i + 2)
                .ok_or_else(|| err(offset + i + 1, "range without an end"))?;
            hi = h
                .to_digit(10)
                .ok_or_else(|| err(offset + i + 2, &format!("`{h}` is not a digit in `[]`")))?;
            if hi < lo {
                return Err(err(offset + i, "range end is below its start"));
            }
            i += 2;
        }
        for d in lo..=hi {
            set[d as usize] = true;
        }
        i += 1;
    }
    if negate {
        for b in set.iter_mut() {
            *b = !*b;
        }
    }
    Ok(set)
}

/// Pick the best peer among `peers` for `number`: the most specific matching pattern, then the
/// lowest preference, then the first in the list. `key` gives each peer's pattern and preference.
pub fn select<'a, P>(
    peers: &'a [P],
    number: &str,
    key: impl Fn(&P) -> (&DestinationPattern, u32),
) -> Option<&'a P> {
    type Rank = (
        (usize, isize, bool),
        std::cmp::Reverse<u32>,
        std::cmp::Reverse<usize>,
    );
    let mut best: Option<(&P, Rank)> = None;
    for (index, peer) in peers.iter().enumerate() {
        let (pattern, preference) = key(peer);
        if !pattern.matches(number) {
            continue;
        }
        let rank = (
            pattern.specificity(),
            std::cmp::Reverse(preference),
            std::cmp::Reverse(index),
        );
        if best.as_ref().is_none_or(|(_, b)| rank > *b) {
            best = Some((peer, rank));
        }
    }
    best.map(|(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DestinationPattern {
        DestinationPattern::parse(s).unwrap()
    }

    #[test]
    fn cisco_wildcards() {
        assert!(p("5551...").matches("5551234"));
        assert!(!p("5551...").matches("55512345"), "no T: exact length");
        assert!(!p("5551...").matches("555123"));
        assert!(p("555T").matches("555"));
        assert!(p("555T").matches("5550000111"));
        assert!(p("T").matches("12025551234"));
        assert!(p("+1[2-9]..T").matches("+12025551234"));
        assert!(!p("+1[2-9]..T").matches("+11025551234"));
        assert!(!p("+1T").matches("12025551234"), "+ is literal");
        assert!(p("[^01]T").matches("2"));
        assert!(!p("[^01]T").matches("1"));
        assert!(p("[1,3-4]").matches("4"));
        assert!(!p("[1,3-4]").matches("2"));
    }

    #[test]
    fn bad_patterns() {
        for bad in ["", "55T5", "5[12", "[]", "[9-1]", "5a5", "1+2", "[x]"] {
            assert!(
                DestinationPattern::parse(bad).is_err(),
                "{bad:?} should not compile"
            );
        }
    }

    #[test]
    fn most_specific_then_preference() {
        let peers = [
            (p("T"), 0, "any"),
            (p("+1900T"), 5, "premium"),
            (p("+1......."), 1, "us7"),
        ];
        let pick = |n| select(&peers, n, |x| (&x.0, x.1)).map(|x| x.2);
        assert_eq!(pick("+19005551234"), Some("premium"));
        assert_eq!(pick("+12345678"), Some("us7"));
        assert_eq!(pick("4930123"), Some("any"));
        let tie = [(p("5..."), 3, "b"), (p("5..."), 1, "a")];
        assert_eq!(
            select(&tie, "5123", |x| (&x.0, x.1)).map(|x| x.2),
            Some("a")
        );
    }
}
