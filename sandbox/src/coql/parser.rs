//! COQL recursive-descent parser: tokens → [`Query`]. Purely syntactic; field names and value types
//! are checked against the Deals metadata in [`super::exec`].
//!
//! Grammar (keywords case-insensitive):
//! ```text
//! query     := SELECT column (',' column)* FROM ident WHERE expr
//!              [ORDER BY ident [ASC|DESC] (',' ident [ASC|DESC])*]
//!              [LIMIT num [OFFSET num | ',' num]]
//! column    := ident | FUNC '(' ident ')'              FUNC = COUNT|SUM|MIN|MAX|AVG
//! expr      := term [(AND|OR) term]                   at most two operands per parenthesis level
//! term      := '(' expr ')' | condition
//! condition := ident op literal | ident [NOT] IN '(' literal (',' literal)* ')'
//!            | ident [NOT] BETWEEN literal AND literal | ident IS [NOT] NULL
//!            | ident [NOT] LIKE string
//! ```
//! `LIMIT a, b` is read as offset a, count b (MySQL style, seen in public COQL code; Zoho's own
//! syntax line is UNCONFIRMED).
//!
//! Zoho's rule "more than two criteria must be parenthesised in pairs" (`((A and B) and C)`) is
//! enforced: `A and B and C` and `A and B or C` are SYNTAX_ERRORs, as they are on Zoho.

use super::lexer::{tokenize, Tok, Token};
use super::{CoqlError, MAX_IN_VALUES};

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// COUNT(field): matching rows where the field is not null.
    Count,
    /// SUM(field).
    Sum,
    /// MIN(field).
    Min,
    /// MAX(field).
    Max,
    /// AVG(field).
    Avg,
}

/// One select column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// A field or dotted lookup field.
    Field(String),
    /// An aggregate; `key` is the result key as Zoho spells it (`COUNT(id)`).
    Aggregate {
        /// The function.
        func: Agg,
        /// Its argument.
        field: String,
        /// The result key.
        key: String,
    },
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// 'text'
    Str(String),
    /// 12.5 as written
    Num(String),
    /// true / false
    Bool(bool),
    /// null
    Null,
}

/// What a condition tests.
#[derive(Debug, Clone, PartialEq)]
pub enum CondKind {
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`.
    Cmp(&'static str, Lit),
    /// `[not] in (...)`.
    In {
        /// `not in`.
        negated: bool,
        /// The list.
        values: Vec<Lit>,
    },
    /// `[not] between lo and hi` (inclusive).
    Between {
        /// `not between`.
        negated: bool,
        /// Lower bound.
        lo: Lit,
        /// Upper bound.
        hi: Lit,
    },
    /// `is [not] null`.
    IsNull {
        /// `is not null`.
        negated: bool,
    },
    /// `[not] like 'pattern'` with `%` wildcards.
    Like {
        /// `not like`.
        negated: bool,
        /// The pattern.
        pattern: String,
    },
}

/// One criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// Field (possibly dotted).
    pub field: String,
    /// Column of the field in the query, for error details.
    pub col: usize,
    /// The test.
    pub kind: CondKind,
}

/// A WHERE expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// One criterion.
    Cond(Cond),
}

impl Expr {
    /// Number of criteria.
    pub fn criteria(&self) -> usize {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.criteria() + b.criteria(),
            Expr::Cond(_) => 1,
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Select list.
    pub columns: Vec<Column>,
    /// Column (1-based) where each select item starts, for error details.
    pub column_cols: Vec<usize>,
    /// FROM module, as written.
    pub module: String,
    /// WHERE.
    pub filter: Expr,
    /// ORDER BY (field, ascending, column in the query).
    pub order: Vec<(String, bool, usize)>,
    /// LIMIT as written (None = default).
    pub limit: Option<u64>,
    /// OFFSET (0 when absent).
    pub offset: u64,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn err_here(&self, message: impl Into<String>) -> CoqlError {
        let t = self.peek();
        let near = if t.tok == Tok::Eof { "end of query" } else { &t.text };
        CoqlError::syntax(message, t.col, near)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), CoqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.err_here(format!("expected `{kw}`")))
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), CoqlError> {
        if self.peek().tok == want {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err_here(format!("expected {what}")))
        }
    }

    /// A module name: a bare word that is not reserved.
    fn ident(&mut self, what: &str) -> Result<(String, usize), CoqlError> {
        match &self.peek().tok {
            Tok::Ident(s) if !is_reserved(s) => {
                let r = (s.clone(), self.peek().col);
                self.pos += 1;
                Ok(r)
            }
            Tok::Ident(s) => {
                let s = s.clone();
                Err(self.err_here(format!("expected {what}, found the reserved word `{s}`")))
            }
            _ => Err(self.err_here(format!("expected {what}"))),
        }
    }

    /// A field name: a bare word that is not reserved, or any name in single or double quotes.
    ///
    /// Kaizen #171 ("FAQs on COQL API", q. 1; docs/zoho-api.md §3c): a column whose API name is an SQL
    /// reserved word (Zoho's example: `External`) gives a SYNTAX_ERROR unless it is "enclosed in single or
    /// double quotes", e.g. `select 'External' from Contacts where id is not null`. So a quoted word where
    /// a field is expected is a field name, not a value; the sandbox accepts quoting for any field.
    fn field(&mut self, what: &str) -> Result<(String, usize), CoqlError> {
        match &self.peek().tok {
            Tok::Str(s) | Tok::DStr(s) if !s.is_empty() => {
                let r = (s.clone(), self.peek().col);
                self.pos += 1;
                Ok(r)
            }
            Tok::Ident(s) if is_reserved(s) => {
                let s = s.clone();
                Err(self.err_here(format!(
                    "`{s}` is a reserved word; a field with this API name must be enclosed in quotes ('{s}')"
                )))
            }
            _ => self.ident(what),
        }
    }

    fn count(&mut self) -> Result<u64, CoqlError> {
        match &self.peek().tok {
            Tok::Num(n) if n.chars().all(|c| c.is_ascii_digit()) => {
                let v = n.parse().map_err(|_| self.err_here("number too large"))?;
                self.pos += 1;
                Ok(v)
            }
            _ => Err(self.err_here("expected a non-negative integer")),
        }
    }

    fn query(&mut self) -> Result<Query, CoqlError> {
        self.expect_kw("select")?;
        let mut column_cols = vec![self.peek().col];
        let mut columns = vec![self.column()?];
        while self.peek().tok == Tok::Comma {
            self.pos += 1;
            column_cols.push(self.peek().col);
            columns.push(self.column()?);
        }
        self.expect_kw("from")?;
        let (module, _) = self.ident("a module name")?;
        if !self.eat_kw("where") {
            // Zoho: "does not contain … the where clause" is a SYNTAX_ERROR.
            let mut e = self.err_here("the where clause is missing; COQL requires a WHERE clause");
            if let Some(d) = e.details.as_object_mut() {
                d.insert("clause".into(), "where".into());
            }
            return Err(e);
        }
        let filter = self.expr()?;
        let mut order = Vec::new();
        if self.eat_kw("order") {
            self.expect_kw("by")?;
            loop {
                let (f, col) = self.field("a field to order by")?;
                let asc = if self.eat_kw("desc") {
                    false
                } else {
                    self.eat_kw("asc");
                    true
                };
                order.push((f, asc, col));
                if self.peek().tok != Tok::Comma {
                    break;
                }
                self.pos += 1;
            }
        }
        let (mut limit, mut offset) = (None, 0);
        if self.eat_kw("limit") {
            let first = self.count()?;
            if self.peek().tok == Tok::Comma {
                self.pos += 1;
                offset = first;
                limit = Some(self.count()?);
            } else {
                limit = Some(first);
                if self.eat_kw("offset") {
                    offset = self.count()?;
                }
            }
        }
        if self.peek().tok != Tok::Eof {
            return Err(self.err_here("unexpected text after the query"));
        }
        Ok(Query { columns, column_cols, module, filter, order, limit, offset })
    }

    fn column(&mut self) -> Result<Column, CoqlError> {
        if self.peek().tok == Tok::Star {
            return Err(self.err_here("`*` is not supported; name the fields to select"));
        }
        let quoted = matches!(self.peek().tok, Tok::Str(_) | Tok::DStr(_));
        let (name, _) = self.field("a field name")?;
        if quoted || self.peek().tok != Tok::LParen {
            return Ok(Column::Field(name));
        }
        let func = match name.to_ascii_uppercase().as_str() {
            "COUNT" => Agg::Count,
            "SUM" => Agg::Sum,
            "MIN" => Agg::Min,
            "MAX" => Agg::Max,
            "AVG" => Agg::Avg,
            _ => return Err(self.err_here(format!("unknown function `{name}`"))),
        };
        self.pos += 1;
        let (field, _) = self.field("a field name")?;
        self.expect(Tok::RParen, "`)`")?;
        Ok(Column::Aggregate { func, key: format!("{}({field})", name.to_ascii_uppercase()), field })
    }

    fn logic_op(&self) -> Option<bool> {
        if self.is_kw("and") {
            Some(true)
        } else if self.is_kw("or") {
            Some(false)
        } else {
            None
        }
    }

    fn expr(&mut self) -> Result<Expr, CoqlError> {
        let left = self.term()?;
        let Some(is_and) = self.logic_op() else {
            return Ok(left);
        };
        self.pos += 1;
        let right = self.term()?;
        if self.logic_op().is_some() {
            return Err(self
                .err_here("more than two criteria must be grouped in pairs with parentheses, e.g. ((A and B) and C)"));
        }
        Ok(if is_and { Expr::And(Box::new(left), Box::new(right)) } else { Expr::Or(Box::new(left), Box::new(right)) })
    }

    fn term(&mut self) -> Result<Expr, CoqlError> {
        if self.peek().tok == Tok::LParen {
            self.pos += 1;
            let e = self.expr()?;
            self.expect(Tok::RParen, "`)`")?;
            return Ok(e);
        }
        Ok(Expr::Cond(self.condition()?))
    }

    fn literal(&mut self) -> Result<Lit, CoqlError> {
        let lit = match &self.peek().tok {
            Tok::Str(s) | Tok::DStr(s) => Lit::Str(s.clone()),
            Tok::Num(n) => Lit::Num(n.clone()),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Lit::Null,
            _ => return Err(self.err_here("expected a value")),
        };
        self.pos += 1;
        Ok(lit)
    }

    fn condition(&mut self) -> Result<Cond, CoqlError> {
        let (field, col) = self.field("a field name")?;
        let kind = if let Tok::Op(op) = self.peek().tok {
            self.pos += 1;
            CondKind::Cmp(op, self.literal()?)
        } else if self.eat_kw("is") {
            let negated = self.eat_kw("not");
            self.expect_kw("null")?;
            CondKind::IsNull { negated }
        } else {
            let negated = self.eat_kw("not");
            if self.eat_kw("in") {
                self.expect(Tok::LParen, "`(` after `in`")?;
                let mut values = vec![self.literal()?];
                while self.peek().tok == Tok::Comma {
                    self.pos += 1;
                    values.push(self.literal()?);
                }
                self.expect(Tok::RParen, "`)` closing the `in` list")?;
                if values.len() > MAX_IN_VALUES {
                    return Err(CoqlError::limit(
                        format!("an `in` list takes at most {MAX_IN_VALUES} values"),
                        serde_json::json!({"field": field, "limit": MAX_IN_VALUES}),
                    ));
                }
                CondKind::In { negated, values }
            } else if self.eat_kw("between") {
                let lo = self.literal()?;
                self.expect_kw("and")?;
                let hi = self.literal()?;
                CondKind::Between { negated, lo, hi }
            } else if self.eat_kw("like") {
                match self.next().tok {
                    Tok::Str(pattern) | Tok::DStr(pattern) => CondKind::Like { negated, pattern },
                    _ => {
                        self.pos -= 1;
                        return Err(self.err_here("`like` takes a quoted pattern"));
                    }
                }
            } else {
                return Err(
                    self.err_here("expected an operator (=, !=, <, <=, >, >=, in, not in, between, like, is null)")
                );
            }
        };
        Ok(Cond { field, col, kind })
    }
}

/// Words that cannot be a bare field name: COQL's own keywords plus the SQL reserved words a CRM field's API
/// name can plausibly collide with (SQL:2016's reserved list, trimmed to words that are also ordinary
/// English labels). Zoho publishes no list; Kaizen #171 names `External` as one (docs/zoho-api.md §3c).
/// A client that quotes every field name it did not write itself is safe whatever Zoho's exact list is.
const RESERVED: &[&str] = &[
    // COQL grammar
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "between",
    "is",
    "null",
    "like",
    "order",
    "by",
    "asc",
    "desc",
    "limit",
    "offset",
    "true",
    "false",
    // SQL reserved words
    "all",
    "alter",
    "any",
    "as",
    "both",
    "case",
    "cast",
    "check",
    "column",
    "constraint",
    "create",
    "cross",
    "current",
    "default",
    "delete",
    "distinct",
    "drop",
    "else",
    "end",
    "escape",
    "except",
    "exists",
    "external",
    "fetch",
    "for",
    "foreign",
    "full",
    "grant",
    "group",
    "having",
    "inner",
    "insert",
    "intersect",
    "into",
    "join",
    "leading",
    "left",
    "natural",
    "on",
    "outer",
    "primary",
    "references",
    "right",
    "rows",
    "some",
    "table",
    "then",
    "to",
    "trailing",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "when",
    "with",
    "window",
];

fn is_reserved(s: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

/// Parses one COQL query.
pub fn parse(src: &str) -> Result<Query, CoqlError> {
    let toks = tokenize(src)?;
    Parser { toks, pos: 0 }.query()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shapes() {
        let q = parse(
            "select Deal_Name, Owner.email, COUNT(id) from Deals where ((Stage in ('Closed Won', 'Closed Won - Renewal') and Modified_Time >= '2026-11-26T00:00:00+00:00') and id > 0) order by id asc, Modified_Time desc limit 2000 offset 10",
        )
        .expect("parses");
        assert_eq!(q.columns.len(), 3);
        assert_eq!(q.filter.criteria(), 3);
        let order: Vec<(&str, bool)> = q.order.iter().map(|(f, a, _)| (f.as_str(), *a)).collect();
        assert_eq!(order, vec![("id", true), ("Modified_Time", false)]);
        assert_eq!((q.limit, q.offset), (Some(2000), 10));
        let q = parse("SELECT id FROM Deals WHERE Amount NOT BETWEEN 1 AND 5 LIMIT 400, 200").expect("parses");
        assert_eq!((q.limit, q.offset), (Some(200), 400));
        assert!(matches!(q.filter, Expr::Cond(Cond { kind: CondKind::Between { negated: true, .. }, .. })));
        assert!(parse("select id from Deals where Description is not null and Deal_Name not like '%x%'").is_ok());
    }

    #[test]
    fn grammar_errors_are_syntax_errors() {
        for bad in [
            "select id from Deals",
            "select id from Deals order by id",
            "select id from Deals where",
            "select id from Deals where Amount == 5",
            "select id from Deals where Amount ~ 5",
            "select id from Deals where Amount",
            "select id from Deals where a = 1 and b = 2 and c = 3",
            "select id from Deals where a = 1 and b = 2 or c = 3",
            "select * from Deals where id > 0",
            "select id from Deals where (a = 1",
            "select id from Deals where a = 1 limit ten",
            "select id from Deals where a = 1;",
            "select id Deals where a = 1",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.code, "SYNTAX_ERROR", "{bad}");
        }
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let e = parse(&format!("select id from Deals where id in ({})", many.join(","))).expect_err("101 values");
        assert_eq!(e.code, "LIMIT_EXCEEDED");
        for reserved in ["select External from Deals where id > 0", "select id from Deals where Order = 'x'"] {
            let e = parse(reserved).expect_err(reserved);
            assert_eq!(e.code, "SYNTAX_ERROR", "{reserved}");
            assert!(e.message.contains("quotes"), "{}", e.message);
        }
        let q = parse("select 'External', \"Order\" from Deals where ('External' = 'x' and \"Order\" is null) order by 'External'")
            .expect("quoted reserved words are field names");
        assert_eq!(q.columns, vec![Column::Field("External".into()), Column::Field("Order".into())]);
        assert_eq!(q.order[0].0, "External");
        let e = parse("select id from Deals limit 5").expect_err("no where");
        assert_eq!(e.details["clause"], "where");
        assert!(parse("select id from Deals where ((a = 1 and b = 2) and c = 3)").is_ok());
    }
}
