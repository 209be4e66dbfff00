//! Runs one SQL file against a SQLite warehouse file and prints the result as an aligned table: how
//! `make demo` prints its analyst query (`sql/queries/sqlite_won_revenue_by_owner.sql`) without needing
//! Python or the sqlite3 shell.
//!
//! Usage: `cargo run --release --example sqlite_query -- <database.sqlite3> <query.sql>`
//!
//! The database is opened read-only, and the file must hold exactly one statement. Columns whose values are all
//! numbers are right-aligned; NULL prints as an empty cell. Not for the job's own work: it is a reader.

use std::process::ExitCode;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, sql] = args.as_slice() else {
        eprintln!("usage: sqlite_query <database.sqlite3> <query.sql>");
        return ExitCode::from(2);
    };
    match run(db, sql) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sqlite_query: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The query's result, formatted.
fn run(db: &str, sql_path: &str) -> Result<String, String> {
    let sql = std::fs::read_to_string(sql_path).map_err(|e| format!("cannot read {sql_path}: {e}"))?;
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {db} (run `make demo` first?): {e}"))?;
    let mut stmt = conn.prepare(&sql).map_err(|e| format!("{sql_path}: {e}"))?;
    let header: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let mut rows = stmt.query([]).map_err(|e| format!("{sql_path}: {e}"))?;
    let mut cells: Vec<Vec<String>> = Vec::new();
    while let Some(row) = rows.next().map_err(|e| format!("{sql_path}: {e}"))? {
        let mut line = Vec::with_capacity(header.len());
        for i in 0..header.len() {
            let value = row.get_ref(i).map_err(|e| format!("{sql_path}: column {i}: {e}"))?;
            line.push(match value {
                ValueRef::Null => String::new(),
                ValueRef::Integer(n) => n.to_string(),
                ValueRef::Real(x) => x.to_string(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
            });
        }
        cells.push(line);
    }
    Ok(format_table(&header, &cells))
}

/// Whether a cell reads as a number (`-12500.5`, `3`).
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.') && digits.matches('.').count() <= 1
}

/// Columns padded to their widest cell; numeric columns right-aligned.
fn format_table(header: &[String], rows: &[Vec<String>]) -> String {
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max();
    let numeric = |i: usize| !rows.is_empty() && rows.iter().all(|r| r[i].is_empty() || is_number(&r[i]));
    let columns: Vec<(usize, bool)> = (0..header.len()).map(|i| (width(i).unwrap_or(0), numeric(i))).collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&columns)
            .map(|(c, &(w, right))| if right { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header);
    for row in rows {
        out.push_str(&line(row));
    }
    if rows.is_empty() {
        out.push_str("(no rows)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    //! Run with `cargo test --example sqlite_query`.
    use super::*;

    const DEMO_QUERY: &str = include_str!("../sql/queries/sqlite_won_revenue_by_owner.sql");

    /// The demo query over `(owner, currency, amount)` rows standing in for `current_won_deals`.
    fn revenue(rows: &[(&str, &str, &str)]) -> Vec<(String, String, i64, String)> {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch("CREATE TABLE current_won_deals (owner_name TEXT, currency TEXT, amount TEXT)")
            .expect("create table");
        for (owner, currency, amount) in rows {
            conn.execute("INSERT INTO current_won_deals VALUES (?1, ?2, ?3)", [owner, currency, amount])
                .expect("insert");
        }
        let mut stmt = conn.prepare(DEMO_QUERY).expect("the demo query prepares");
        let rows =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).expect("the demo query runs");
        rows.collect::<Result<Vec<_>, _>>().expect("rows")
    }

    #[test]
    fn the_demo_query_adds_decimal_text_exactly_per_owner_and_currency() {
        let rows = [
            ("Ana", "USD", "0.1"),
            ("Ana", "USD", "0.2"),
            ("Ana", "EUR", "5"),
            ("Ana", "EUR", "-0.25"),
            ("Bo", "USD", "123456789012.123456789"),
            ("Bo", "USD", "0.000000001"),
            ("Cy", "USD", "-1"),
            ("Cy", "USD", "-2.5"),
        ];
        let got = revenue(&rows);
        let row = |o: &str, c: &str, n: i64, r: &str| (o.to_owned(), c.to_owned(), n, r.to_owned());
        assert_eq!(
            got,
            [
                row("Bo", "USD", 2, "123456789012.12345679"),
                row("Ana", "EUR", 2, "4.75"),
                row("Ana", "USD", 2, "0.3"),
                row("Cy", "USD", 2, "-3.5"),
            ]
        );
    }

    #[test]
    fn the_table_right_aligns_numbers_and_says_when_there_are_no_rows() {
        let header = ["owner".to_owned(), "won_revenue".to_owned()];
        let rows = vec![vec!["Ana".to_owned(), "4.75".to_owned()], vec!["Bo".to_owned(), "-123.5".to_owned()]];
        assert_eq!(format_table(&header, &rows), "owner  won_revenue\nAna           4.75\nBo          -123.5\n");
        assert_eq!(format_table(&header, &[]), "owner  won_revenue\n(no rows)\n");
    }
}
