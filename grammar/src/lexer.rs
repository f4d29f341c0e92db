//! Source text to tokens. `logos` does the scanning; this module turns its raw tokens into the
//! parser's tokens, decodes literals, sets comments aside for the formatter, and turns every lexical
//! problem into a [`SyntaxError`] while still producing a token, so that parsing goes on.

use crate::ast::Comment;
use crate::span::{FileId, Span};
use crate::{SyntaxError, SyntaxErrorKind};
use logos::Logos;
use std::fmt;

#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
#[logos(skip r"[ \t\r\n\f]+")]
enum Raw {
    #[regex(r"//[^\n]*")]
    Comment,
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Word,
    #[regex(r"[0-9]+")]
    Int,
    /// `12.50`: digits on both sides of the point (so `0..10` stays a range).
    #[regex(r"[0-9]+\.[0-9]+")]
    Decimal,
    #[regex(r"[0-9]+[smhd]([0-9]+[smhd])*")]
    Duration,
    #[regex(r#""([^"\\\n]|\\[^\n])*""#)]
    Str,
    #[regex(r#""([^"\\\n]|\\[^\n])*"#)]
    UnterminatedStr,
    /// Not part of the language; recognised so that it gets one error saying which quotes to use.
    #[regex(r"'([^'\\\n]|\\[^\n])*'")]
    SingleQuotedStr,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token(";")]
    Semi,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(".")]
    Dot,
    #[token("..")]
    DotDot,
    #[token(".*")]
    DotStar,
    #[token("->")]
    Arrow,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("-")]
    Minus,
    #[token("?")]
    Question,
    #[token("*")]
    Star,
}

macro_rules! tokens {
    ($($keyword:literal => $variant:ident,)*) => {
        /// A token as the parser sees it.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Tok {
            $($variant,)*
            Ident(String),
            Int(u64),
            /// A decimal literal: its digits without the point, and how many follow the point.
            Decimal(u64, u8),
            Str(String),
            Duration(u64),
            LBrace, RBrace, LBracket, RBracket, LParen, RParen,
            Semi, Comma, Colon, Dot, DotDot, DotStar, Arrow,
            EqEq, NotEq, Lt, Le, Gt, Ge, Minus, Question, Star,
        }

        /// Every reserved word of the language, in the order the grammar lists them.
        pub const KEYWORDS: &[&str] = &[$($keyword,)*];

        fn keyword(word: &str) -> Option<Tok> {
            match word {
                $($keyword => Some(Tok::$variant),)*
                _ => None,
            }
        }

        impl fmt::Display for Tok {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let text = match self {
                    $(Tok::$variant => $keyword,)*
                    Tok::Ident(name) => return write!(f, "{name}"),
                    Tok::Int(value) => return write!(f, "{value}"),
                    Tok::Decimal(units, scale) => return f.write_str(&crate::format::decimal(i128::from(*units), *scale)),
                    Tok::Str(value) => return write!(f, "{value:?}"),
                    Tok::Duration(seconds) => return write!(f, "{}", crate::format::duration(*seconds)),
                    Tok::LBrace => "{", Tok::RBrace => "}", Tok::LBracket => "[",
                    Tok::RBracket => "]", Tok::LParen => "(", Tok::RParen => ")",
                    Tok::Semi => ";", Tok::Comma => ",", Tok::Colon => ":", Tok::Dot => ".",
                    Tok::DotDot => "..", Tok::DotStar => ".*", Tok::Arrow => "->",
                    Tok::EqEq => "==", Tok::NotEq => "!=", Tok::Lt => "<", Tok::Le => "<=",
                    Tok::Gt => ">", Tok::Ge => ">=", Tok::Minus => "-", Tok::Question => "?", Tok::Star => "*",
                };
                f.write_str(text)
            }
        }
    };
}

tokens! {
    "acknowledge" => Acknowledge,
    "agent" => Agent,
    "all" => All,
    "allow" => Allow,
    "always" => Always,
    "and" => And,
    "any" => Any,
    "args" => Args,
    "assert" => Assert,
    "at" => At,
    "attrs" => Attrs,
    "budget" => Budget,
    "by" => By,
    "call" => Call,
    "calls" => Calls,
    "contains" => Contains,
    "context" => Context,
    "cost" => Cost,
    "creates" => Creates,
    "credential_ttl" => CredentialTtl,
    "delegate" => Delegate,
    "deny" => Deny,
    "depth" => Depth,
    "domain" => Domain,
    "effect" => Effect,
    "ends_with" => EndsWith,
    "env" => Env,
    "escalation" => Escalation,
    "environments" => Environments,
    "expect" => Expect,
    "false" => False,
    "for" => For,
    "forbid" => Forbid,
    "grants" => Grants,
    "has" => Has,
    "in" => In,
    "limit" => Limit,
    "never" => Never,
    "no" => No,
    "not" => Not,
    "on" => On,
    "or" => Or,
    "per" => Per,
    "permit" => Permit,
    "rate" => Rate,
    "repeat" => Repeat,
    "revoke" => Revoke,
    "role" => Role,
    "roles" => Roles,
    "starts_with" => StartsWith,
    "test" => Test,
    "to" => To,
    "tool" => Tool,
    "trifecta" => Trifecta,
    "true" => True,
    "under" => Under,
    "via" => Via,
    "when" => When,
    "widening" => Widening,
    "within" => Within,
}

/// Whether `word` is reserved and so cannot name an agent, argument or attribute.
pub fn is_keyword(word: &str) -> bool {
    keyword(word).is_some()
}

/// The result of lexing one file.
#[derive(Debug, Default)]
pub struct Lexed {
    pub tokens: Vec<(usize, Tok, usize)>,
    pub comments: Vec<Comment>,
    pub errors: Vec<SyntaxError>,
}

pub fn lex(source: &str, file: FileId) -> Lexed {
    let mut out = Lexed::default();
    let mut lexer = Raw::lexer(source);
    while let Some(raw) = lexer.next() {
        let range = lexer.span();
        let span = Span::new(file, range.start, range.end);
        let slice = lexer.slice();
        let token = match raw {
            Err(()) => {
                let character = slice.chars().next().unwrap_or('?');
                out.errors.push(SyntaxError {
                    kind: SyntaxErrorKind::InvalidCharacter { character },
                    span,
                });
                continue;
            }
            Ok(Raw::Comment) => {
                let text = slice.strip_prefix("//").unwrap_or(slice);
                out.comments.push(Comment {
                    text: text.trim_end().to_owned(),
                    span,
                });
                continue;
            }
            Ok(Raw::Word) => keyword(slice).unwrap_or_else(|| Tok::Ident(slice.to_owned())),
            Ok(Raw::Int) => match slice.parse::<u64>() {
                Ok(value) => Tok::Int(value),
                Err(_) => {
                    out.errors.push(SyntaxError {
                        kind: SyntaxErrorKind::IntegerTooLarge,
                        span,
                    });
                    Tok::Int(0)
                }
            },
            Ok(Raw::Decimal) => match parse_decimal(slice) {
                Some((units, scale)) => Tok::Decimal(units, scale),
                None => {
                    out.errors.push(SyntaxError {
                        kind: SyntaxErrorKind::IntegerTooLarge,
                        span,
                    });
                    Tok::Decimal(0, 0)
                }
            },
            Ok(Raw::Duration) => match parse_duration(slice) {
                Some(seconds) => Tok::Duration(seconds),
                None => {
                    out.errors.push(SyntaxError {
                        kind: SyntaxErrorKind::DurationTooLarge,
                        span,
                    });
                    Tok::Duration(0)
                }
            },
            Ok(Raw::Str) => {
                let inner = slice.get(1..slice.len() - 1).unwrap_or("");
                Tok::Str(unescape(inner, range.start + 1, file, &mut out.errors))
            }
            Ok(Raw::UnterminatedStr) => {
                out.errors.push(SyntaxError {
                    kind: SyntaxErrorKind::UnterminatedString,
                    span,
                });
                let inner = slice.get(1..).unwrap_or("");
                Tok::Str(unescape(inner, range.start + 1, file, &mut Vec::new()))
            }
            Ok(Raw::SingleQuotedStr) => {
                // `\'` is the one escape a single-quoted string has that a double-quoted one lacks.
                let inner = slice
                    .get(1..slice.len() - 1)
                    .unwrap_or("")
                    .replace("\\'", "'");
                let value = unescape(&inner, range.start + 1, file, &mut Vec::new());
                out.errors.push(SyntaxError {
                    kind: SyntaxErrorKind::SingleQuotedString {
                        value: value.clone(),
                    },
                    span,
                });
                Tok::Str(value)
            }
            Ok(Raw::LBrace) => Tok::LBrace,
            Ok(Raw::RBrace) => Tok::RBrace,
            Ok(Raw::LBracket) => Tok::LBracket,
            Ok(Raw::RBracket) => Tok::RBracket,
            Ok(Raw::LParen) => Tok::LParen,
            Ok(Raw::RParen) => Tok::RParen,
            Ok(Raw::Semi) => Tok::Semi,
            Ok(Raw::Comma) => Tok::Comma,
            Ok(Raw::Colon) => Tok::Colon,
            Ok(Raw::Dot) => Tok::Dot,
            Ok(Raw::DotDot) => Tok::DotDot,
            Ok(Raw::DotStar) => Tok::DotStar,
            Ok(Raw::Arrow) => Tok::Arrow,
            Ok(Raw::EqEq) => Tok::EqEq,
            Ok(Raw::NotEq) => Tok::NotEq,
            Ok(Raw::Lt) => Tok::Lt,
            Ok(Raw::Le) => Tok::Le,
            Ok(Raw::Gt) => Tok::Gt,
            Ok(Raw::Ge) => Tok::Ge,
            Ok(Raw::Minus) => Tok::Minus,
            Ok(Raw::Question) => Tok::Question,
            Ok(Raw::Star) => Tok::Star,
        };
        out.tokens.push((range.start, token, range.end));
    }
    out
}

/// The largest number of digits after a decimal point: `10^18` still fits an `i64`.
pub const MAX_SCALE: u8 = 18;

/// `12.50` to `(1250, 2)`; `None` when the digits do not fit an `i64` or there are more than
/// [`MAX_SCALE`] of them after the point.
fn parse_decimal(text: &str) -> Option<(u64, u8)> {
    let (whole, fraction) = text.split_once('.')?;
    let scale = u8::try_from(fraction.len())
        .ok()
        .filter(|s| *s <= MAX_SCALE)?;
    let mut units: u64 = 0;
    for character in whole.chars().chain(fraction.chars()) {
        units = units
            .checked_mul(10)?
            .checked_add(u64::from(character.to_digit(10)?))?;
    }
    i64::try_from(units).ok()?;
    Some((units, scale))
}

/// `1h30m` to seconds; `None` on overflow.
fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number: u64 = 0;
    for character in text.chars() {
        if let Some(digit) = character.to_digit(10) {
            number = number.checked_mul(10)?.checked_add(u64::from(digit))?;
        } else {
            let unit: u64 = match character {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                _ => 86_400,
            };
            total = total.checked_add(number.checked_mul(unit)?)?;
            number = 0;
        }
    }
    Some(total)
}

/// Decodes `\"`, `\\`, `\n`, `\r`, `\t`, `\0` and `\u{…}`; reports anything else and keeps it as
/// written.
fn unescape(text: &str, offset: usize, file: FileId, errors: &mut Vec<SyntaxError>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((index, character)) = chars.next() {
        if character != '\\' {
            out.push(character);
            continue;
        }
        let Some((_, escaped)) = chars.next() else {
            break;
        };
        let decoded = match escaped {
            '"' => Some('"'),
            '\\' => Some('\\'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            '0' => Some('\0'),
            'u' => {
                let mut end = index + 2;
                let mut hex = String::new();
                let mut closed = false;
                if chars.peek().map(|(_, c)| *c) == Some('{') {
                    chars.next();
                    end += 1;
                    for (position, c) in chars.by_ref() {
                        end = position + c.len_utf8();
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        hex.push(c);
                    }
                }
                let value = if closed {
                    u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                } else {
                    None
                };
                if value.is_none() {
                    errors.push(SyntaxError {
                        kind: SyntaxErrorKind::InvalidEscape {
                            escape: text.get(index..end).unwrap_or("\\u").to_owned(),
                        },
                        span: Span::new(file, offset + index, offset + end),
                    });
                }
                value
            }
            other => {
                errors.push(SyntaxError {
                    kind: SyntaxErrorKind::InvalidEscape {
                        escape: format!("\\{other}"),
                    },
                    span: Span::new(file, offset + index, offset + index + 1 + other.len_utf8()),
                });
                None
            }
        };
        if let Some(decoded) = decoded {
            out.push(decoded);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<Tok> {
        lex(source, FileId(0))
            .tokens
            .into_iter()
            .map(|(_, t, _)| t)
            .collect()
    }

    #[test]
    fn keywords_and_names() {
        assert_eq!(
            kinds("permit agent bot_1"),
            vec![Tok::Permit, Tok::Agent, Tok::Ident("bot_1".into())]
        );
    }

    #[test]
    fn durations_are_seconds() {
        assert_eq!(
            kinds("30s 15m 1h30m 1d"),
            vec![
                Tok::Duration(30),
                Tok::Duration(900),
                Tok::Duration(5_400),
                Tok::Duration(86_400)
            ]
        );
    }

    #[test]
    fn ranges_are_not_decimals() {
        assert_eq!(kinds("0..10"), vec![Tok::Int(0), Tok::DotDot, Tok::Int(10)]);
        assert_eq!(
            kinds("0.50..10.25"),
            vec![Tok::Decimal(50, 2), Tok::DotDot, Tok::Decimal(1025, 2)]
        );
        assert_eq!(kinds("1.0"), vec![Tok::Decimal(10, 1)]);
    }

    #[test]
    fn escapes_decode() {
        assert_eq!(
            kinds(r#""a\"b\\c\n\u{41}""#),
            vec![Tok::Str("a\"b\\c\nA".into())]
        );
    }

    #[test]
    fn bad_escape_is_reported_at_its_span() {
        let lexed = lex(r#"  "ab\qc""#, FileId(0));
        assert_eq!(lexed.errors.len(), 1);
        assert_eq!(lexed.errors[0].span.range(), 5..7);
        assert_eq!(lexed.tokens[0].1, Tok::Str("abc".into()));
    }

    #[test]
    fn comments_are_kept_aside() {
        let lexed = lex("permit // why\nforbid", FileId(0));
        assert_eq!(lexed.tokens.len(), 2);
        assert_eq!(lexed.comments[0].text, " why");
    }

    #[test]
    fn invalid_characters_are_skipped_and_reported() {
        let lexed = lex("permit $ forbid", FileId(0));
        assert_eq!(lexed.tokens.len(), 2);
        assert_eq!(
            lexed.errors[0].kind,
            SyntaxErrorKind::InvalidCharacter { character: '$' }
        );
    }

    #[test]
    fn single_quoted_strings_are_one_error_and_still_a_string() {
        let lexed = lex(r"== 'it\'s' ;", FileId(0));
        assert_eq!(
            lexed.errors,
            vec![SyntaxError {
                kind: SyntaxErrorKind::SingleQuotedString {
                    value: "it's".into()
                },
                span: Span::new(FileId(0), 3, 10),
            }]
        );
        assert_eq!(lexed.tokens[1].1, Tok::Str("it's".into()));
        assert_eq!(lexed.tokens.len(), 3);
    }

    #[test]
    fn huge_integers_are_reported() {
        let lexed = lex("99999999999999999999", FileId(0));
        assert_eq!(lexed.errors[0].kind, SyntaxErrorKind::IntegerTooLarge);
    }
}
