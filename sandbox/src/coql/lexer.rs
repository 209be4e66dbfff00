//! COQL tokenizer: identifiers (with dots for lookup joins), quoted strings, numbers, punctuation
//! and comparison operators. Keywords are ordinary identifiers the parser compares case-insensitively.

use super::CoqlError;

/// One token kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A field, module, keyword or function name (`Owner.email`, `select`, `COUNT`).
    Ident(String),
    /// A single-quoted string, unescaped.
    Str(String),
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
            '\'' => {
                // Quotes inside strings: '' (SQL style) or \' (seen in public COQL code); \\ is a backslash.
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
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if matches!(chars.get(i + 1), Some('\'') | Some('\\')) => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
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
            toks("Owner.email != 'O''Brien \\'x\\'' and id >= -12.5"),
            vec![
                Tok::Ident("Owner.email".into()),
                Tok::Op("!="),
                Tok::Str("O'Brien 'x'".into()),
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
        assert!(tokenize("a = \"x\"").is_err());
    }
}
