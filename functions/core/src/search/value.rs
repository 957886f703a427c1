//! The parts of a search value, as the criteria reader writes them and the matcher reads
//! them: the comparator prefix, the modifier, the value, and the stand-in for an escaped
//! `|`. Both [`super::criteria`] and [`super::matcher`] use these, and neither needs the
//! other's internals for them.

/// A comparator prefix (`eq` when none is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Equal (within the value's precision).
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
    /// Greater or equal.
    Ge,
    /// Less or equal.
    Le,
    /// Starts after.
    Sa,
    /// Ends before.
    Eb,
    /// Approximately (within 10 %).
    Ap,
}

impl Prefix {
    /// Reads a comparator code.
    pub fn read(code: &str) -> Option<Self> {
        Some(match code {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "gt" => Self::Gt,
            "lt" => Self::Lt,
            "ge" => Self::Ge,
            "le" => Self::Le,
            "sa" => Self::Sa,
            "eb" => Self::Eb,
            "ap" => Self::Ap,
            _ => return None,
        })
    }
}

/// A modifier this server evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    /// None.
    None,
    /// `:missing=true|false`.
    Missing,
    /// `:not` (token): no value matches.
    Not,
    /// `:exact` (string): the whole string, case and accents as written.
    Exact,
    /// `:contains` (string): anywhere in the string.
    Contains,
    /// `:text` (token): the display text starts with the value.
    Text,
    /// `:identifier` (reference): the reference's `identifier`.
    Identifier,
    /// `:[Type]` (reference): a reference to that type.
    Type(String),
    /// `:below` (uri): the value is a prefix of the URI.
    Below,
    /// `:above` (uri): the URI is a prefix of the value.
    Above,
}

/// One value of a clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchValue {
    /// Its comparator.
    pub prefix: Prefix,
    /// The value, unescaped, without its prefix.
    pub text: String,
}

/// Stands for an escaped `|` until the value is split into system and code.
pub(crate) const ESCAPED_BAR: char = '\u{E000}';
