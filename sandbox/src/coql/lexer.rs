//! COQL tokenizer: identifiers (with dots for lookup joins), quoted strings, numbers, punctuation
//! and comparison operators. Keywords are ordinary identifiers the parser compares case-insensitively.

use super::CoqlError;

/// One token kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A field, module, keyword or function name (`Owner.email`, `select`, `COUNT`).
    Ident(String),
    /// A single-quoted string, unescaped (a value, or a quoted field name where a field is expected).
    Str(String),
    /// A double-quoted string, unescaped (the same, in the other quote).
    DStr(String),
    /// A number as written (`-12.5`).
    Num(String),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `*`
    Star,
    /// A comparison operator: `=`, `!=`, `<`, `<=`, `>`, `>=`.
    Op(&'static str),
    /// End of input.
    Eof,
}

/// A token and the 1-based column where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Column (in characters) of its first character.
    pub col: usize,
    /// The source text of the token (for error messages).
    pub text: String,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '.'
}

/// Splits a query into tokens, ending with [`Tok::Eof`].
pub fn tokenize(src: &str) -> Result<Vec<Token>, CoqlError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '*' => {
                i += 1;
                Tok::Star
            }
            '=' => {
                i += 1;
                Tok::Op("=")
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Tok::Op("!=")
            }
            '<' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Tok::Op("<=")
            }
            '>' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Tok::Op(">=")
            }
            '<' => {
                i += 1;
                Tok::Op("<")
            }
            '>' => {
                i += 1;
                Tok::Op(">")
            }
            '\'' | '"' => {
                // COQL quotes like standard SQL (docs/zoho-api.md §3c; Kaizen #171 "FAQs on COQL API", q. 3):
                // the quote character is written twice inside a literal ('Partner''s deal'). A backslash is
                // an ordinary character, so `\'` (the habit of other query languages) is refused with a
                // SYNTAX_ERROR naming the fix rather than silently read as `\` plus the end of the string.
                // Double-quoted text is the same token in another quote: the parser reads either as a
                // value or, where a field is expected, as a quoted field name ("External").
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(CoqlError::syntax(
                                "unterminated string literal",
                                col,
                                &src[byte_offset(src, start)..],
                            ))
                        }
                        Some(&q) if q == quote && chars.get(i + 1) == Some(&quote) => {
                            s.push(quote);
                            i += 2;
                        }
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some('\\') if chars.get(i + 1) == Some(&quote) => {
                            return Err(CoqlError::syntax(
                                format!("a backslash does not escape a quote in COQL; write the quote twice ({quote}{quote})"),
                                i + 1,
                                &format!("\\{quote}"),
                            ));
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                if quote == '"' {
                    Tok::DStr(s)
                } else {
                    Tok::Str(s)
                }
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if chars.get(i).is_some_and(|&d| is_ident_char(d)) {
                    let end = chars[i..].iter().position(|d| !is_ident_char(*d)).map_or(chars.len(), |p| i + p);
                    let word: String = chars[start..end].iter().collect();
                    return Err(CoqlError::syntax(format!("invalid token `{word}`"), col, &word));
                }
                Tok::Num(chars[start..i].iter().collect())
            }
            c if is_ident_start(c) => {
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                Tok::Ident(chars[start..i].iter().collect())
            }
            other => return Err(CoqlError::syntax(format!("unexpected character `{other}`"), col, &other.to_string())),
        };
        out.push(Token { tok, col, text: chars[start..i].iter().collect() });
    }
    out.push(Token { tok: Tok::Eof, col: chars.len() + 1, text: String::new() });
    Ok(out)
}

fn byte_offset(src: &str, char_idx: usize) -> usize {
    src.char_indices().nth(char_idx).map_or(src.len(), |(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).expect("tokenizes").into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn splits_operators_strings_numbers_and_dotted_names() {
        assert_eq!(
            toks("Owner.email != 'O''Brien \\x' and id >= -12.5"),
            vec![
                Tok::Ident("Owner.email".into()),
                Tok::Op("!="),
                Tok::Str("O'Brien \\x".into()),
                Tok::Ident("and".into()),
                Tok::Ident("id".into()),
                Tok::Op(">="),
                Tok::Num("-12.5".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(tokenize("a ~ 1").expect_err("bad char").code, "SYNTAX_ERROR");
        assert!(tokenize("a = 'open").is_err());
        assert!(tokenize("a = 12abc").is_err());
        assert_eq!(toks("\"Ex\"\"t\" = 'x'")[0], Tok::DStr("Ex\"t".into()));
        let e = tokenize("Deal_Name = 'Partner\\'s deal'").expect_err("backslash escape");
        assert_eq!(e.code, "SYNTAX_ERROR");
        assert!(e.message.contains("twice"), "{}", e.message);
    }
}
