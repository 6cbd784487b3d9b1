//! Splitting a script into statements and parsing Weir's (Flink's) own statements.
//!
//! Queries (`SELECT`, `INSERT INTO`, `EXPLAIN`) go to sqlparser as they are; `CREATE TABLE` with a
//! `WATERMARK` and `WITH ('k' = 'v')`, `CREATE FUNCTION ... LANGUAGE WASM USING JAR`, `SET 'k' =
//! 'v'` and `SHOW TABLES | FUNCTIONS` are parsed here with sqlparser's tokens and helpers, so every
//! error carries a line and column. Flink's `LATERAL TABLE(f(x))` becomes sqlparser's
//! `LATERAL f(x)` before parsing.

use datafusion_sql::sqlparser::ast::{self, DataType as SqlDataType, Ident};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::keywords::Keyword;
use datafusion_sql::sqlparser::parser::{Parser, ParserError};
pub use datafusion_sql::sqlparser::tokenizer::Location;
use datafusion_sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::SqlError;

/// One statement of a script and where it starts.
#[derive(Debug, Clone)]
pub struct Located {
    pub statement: Statement,
    pub location: Location,
}

/// What a script may say.
#[derive(Debug, Clone)]
pub enum Statement {
    CreateTable(Box<CreateTable>),
    CreateFunction(CreateFunction),
    Set {
        key: String,
        value: String,
    },
    ShowTables,
    ShowFunctions,
    /// `SELECT ...` or `INSERT INTO ... SELECT ...`, or either under `EXPLAIN`.
    Query {
        statement: Box<ast::Statement>,
        explain: bool,
    },
}

#[derive(Debug, Clone)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: SqlDataType,
    pub not_null: bool,
    pub location: Location,
    /// `METADATA [FROM 'key'] [VIRTUAL]`: filled from the connector's metadata (a Kafka
    /// message's offset, say) rather than from the payload.
    pub metadata: Option<MetadataDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataDef {
    /// The connector's name for it; the column's name when no `FROM` is written.
    pub key: String,
    /// Read only: an `INSERT` leaves it out (as in Flink).
    pub is_virtual: bool,
}

#[derive(Debug, Clone)]
pub struct WatermarkDef {
    pub column: String,
    /// The expression as written, e.g. `ts - INTERVAL '5' SECOND` (acts in streaming mode).
    pub expr: ast::Expr,
    pub location: Location,
}

impl WatermarkDef {
    /// The bounded out-of-orderness in milliseconds that `expr` states: `ts` (0) or
    /// `ts - INTERVAL '<n>' <unit>`, Flink's usual forms; anything else is an error saying so.
    pub fn delay_millis(&self) -> Result<i64, String> {
        let unsupported = || {
            format!(
                "the watermark must be `{0}` or `{0} - INTERVAL '<n>' <unit>` (bounded \
                 out-of-orderness), not `{1}`",
                self.column, self.expr
            )
        };
        let is_column =
            |e: &ast::Expr| matches!(e, ast::Expr::Identifier(id) if id.value == self.column);
        let mut expr = &self.expr;
        while let ast::Expr::Nested(inner) = expr {
            expr = inner;
        }
        match expr {
            e if is_column(e) => Ok(0),
            ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Minus,
                right,
            } if is_column(left) => match right.as_ref() {
                ast::Expr::Interval(interval) => interval_millis(interval).ok_or_else(unsupported),
                _ => Err(unsupported()),
            },
            _ => Err(unsupported()),
        }
    }
}

/// `INTERVAL '<n>' <unit>` (or `INTERVAL '<n> <unit>'`) in milliseconds, when not negative.
pub(crate) fn interval_millis(interval: &ast::Interval) -> Option<i64> {
    if interval.last_field.is_some() {
        return None;
    }
    let text = match interval.value.as_ref() {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::Number(s, _) => s.clone(),
            _ => return None,
        },
        _ => return None,
    };
    let (amount, unit) = match &interval.leading_field {
        Some(field) => (text.trim().to_string(), field.to_string()),
        None => {
            let (amount, unit) = text.trim().split_once(char::is_whitespace)?;
            (amount.to_string(), unit.trim().to_uppercase())
        }
    };
    // `DateTimeField`'s names as it prints them.
    let unit_millis = match unit.as_str() {
        "MILLISECOND" | "MILLISECONDS" => 1.0,
        "SECOND" | "SECONDS" => 1_000.0,
        "MINUTE" | "MINUTES" => 60_000.0,
        "HOUR" | "HOURS" => 3_600_000.0,
        "DAY" | "DAYS" => 86_400_000.0,
        _ => return None,
    };
    let amount: f64 = amount.parse().ok()?;
    let millis = (amount * unit_millis).round();
    (millis.is_finite() && (0.0..9.0e15).contains(&millis)).then_some(millis as i64)
}

#[derive(Debug, Clone)]
pub struct CreateTable {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    pub primary_key: Vec<String>,
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct CreateFunction {
    pub name: String,
    /// The export name inside the module (`AS 'export-name'`).
    pub export: String,
    pub path: String,
    pub temporary: bool,
    pub if_not_exists: bool,
}

/// Parses a script of statements separated by `;`.
///
/// # Errors
/// The first syntax error, with its line and column.
pub fn parse_script(sql: &str) -> Result<Vec<Located>, SqlError> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::Syntax {
            message: e.message.clone(),
            location: e.location,
        })?;
    let tokens = rewrite_window_tvf(rewrite_lateral_table(tokens));
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let next = parser.peek_token();
        if next.token == Token::EOF {
            break;
        }
        let location = next.span.start;
        let statement = parse_statement(&mut parser).map_err(|e| syntax(e, location))?;
        let after = parser.peek_token();
        if after.token != Token::EOF && after.token != Token::SemiColon {
            return Err(SqlError::Syntax {
                message: format!(
                    "expected ';' or the end of the script, found {}",
                    after.token
                ),
                location: after.span.start,
            });
        }
        statements.push(Located {
            statement,
            location,
        });
    }
    Ok(statements)
}

/// sqlparser's errors carry "at Line: l, Column: c" in the text; keep the statement's start as a
/// fallback location for those that do not.
fn syntax(error: ParserError, statement_start: Location) -> SqlError {
    let message = match error {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_string(),
    };
    match split_location(&message) {
        Some((text, location)) => SqlError::Syntax {
            message: text,
            location,
        },
        None => SqlError::Syntax {
            message,
            location: statement_start,
        },
    }
}

/// Splits `"... at Line: 3, Column: 7"` into the text and the location.
pub(crate) fn split_location(message: &str) -> Option<(String, Location)> {
    let at = message.rfind(" at Line: ")?;
    let rest = &message[at + " at Line: ".len()..];
    let (line, column) = rest.split_once(", Column: ")?;
    let column: String = column.chars().take_while(char::is_ascii_digit).collect();
    Some((
        message[..at].trim_end().to_string(),
        Location::new(line.trim().parse().ok()?, column.parse().ok()?),
    ))
}

fn parse_statement(parser: &mut Parser) -> Result<Statement, ParserError> {
    if parser.parse_keywords(&[Keyword::CREATE, Keyword::TABLE]) {
        return parse_create_table(parser).map(|t| Statement::CreateTable(Box::new(t)));
    }
    if parser.peek_keyword(Keyword::CREATE) {
        let start = parser.index();
        parser.next_token();
        let temporary = parser.parse_keyword(Keyword::TEMPORARY)
            || parser.parse_keywords(&[Keyword::TEMPORARY, Keyword::SYSTEM]);
        if parser.parse_keyword(Keyword::FUNCTION) {
            return parse_create_function(parser, temporary).map(Statement::CreateFunction);
        }
        while parser.index() > start {
            parser.prev_token();
        }
    }
    if parser.parse_keyword(Keyword::SET) {
        let key = parse_string_or_name(parser)?;
        parser.expect_token(&Token::Eq)?;
        let value = parse_string_or_name(parser)?;
        return Ok(Statement::Set { key, value });
    }
    if parser.parse_keyword(Keyword::SHOW) {
        if parser.parse_keyword(Keyword::TABLES) {
            return Ok(Statement::ShowTables);
        }
        if parser.parse_keyword(Keyword::FUNCTIONS) {
            return Ok(Statement::ShowFunctions);
        }
        return parser.expected("TABLES or FUNCTIONS after SHOW", parser.peek_token());
    }
    let location = parser.peek_token().span.start;
    let statement = parser.parse_statement()?;
    match statement {
        ast::Statement::Query(_) | ast::Statement::Insert(_) => Ok(Statement::Query {
            statement: Box::new(statement),
            explain: false,
        }),
        ast::Statement::Explain { statement, .. }
            if matches!(
                *statement,
                ast::Statement::Query(_) | ast::Statement::Insert(_)
            ) =>
        {
            Ok(Statement::Query {
                statement,
                explain: true,
            })
        }
        other => Err(ParserError::ParserError(format!(
            "unsupported statement: {} (Weir runs CREATE TABLE, CREATE FUNCTION, SET, SHOW \
             TABLES, SHOW FUNCTIONS, SELECT, INSERT INTO and EXPLAIN) at Line: {}, Column: {}",
            first_words(&other.to_string()),
            location.line,
            location.column
        ))),
    }
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_string_or_name(parser: &mut Parser) -> Result<String, ParserError> {
    let token = parser.next_token();
    match token.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        Token::Number(n, _) => Ok(n),
        Token::Word(w) => {
            // An unquoted dotted key (`SET execution.runtime-mode = batch` is not Flink, but
            // `SET parallelism.default = 2` is a common slip): accept words joined by '.' and '-'.
            let mut text = w.value;
            while matches!(parser.peek_token().token, Token::Period | Token::Minus) {
                text.push_str(&parser.next_token().token.to_string());
                match parser.next_token().token {
                    Token::Word(w) => text.push_str(&w.value),
                    other => {
                        return Err(ParserError::ParserError(format!(
                            "expected a word after '{text}', found {other}"
                        )));
                    }
                }
            }
            Ok(text)
        }
        _ => parser.expected("a quoted string", token),
    }
}

/// Consumes an unquoted word that sqlparser has no keyword for.
fn parse_word(parser: &mut Parser, word: &str) -> bool {
    match parser.peek_token().token {
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => {
            parser.next_token();
            true
        }
        _ => false,
    }
}

fn ident_name(ident: &Ident) -> String {
    // Flink's table and column names keep their case and are matched exactly (a json key
    // `dateTime` fills column `dateTime`, never `datetime`).
    ident.value.clone()
}

pub(crate) fn object_name(name: &ast::ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|part| part.as_ident().map(ident_name))
        .collect::<Vec<_>>()
        .join(".")
}

/// A function's name: unquoted names fold to lowercase, as DataFusion folds them in calls
/// (Flink's function names are case-insensitive too).
fn function_name(name: &ast::ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| {
            if ident.quote_style.is_some() {
                ident.value.clone()
            } else {
                ident.value.to_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn parse_create_table(parser: &mut Parser) -> Result<CreateTable, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(&parser.parse_object_name(false)?);
    parser.expect_token(&Token::LParen)?;
    let mut table = CreateTable {
        name,
        if_not_exists,
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        options: Vec::new(),
    };
    loop {
        let location = parser.peek_token().span.start;
        if parse_word(parser, "WATERMARK") {
            parser.expect_keyword(Keyword::FOR)?;
            let column = ident_name(&parser.parse_identifier()?);
            parser.expect_keyword(Keyword::AS)?;
            let expr = parser.parse_expr()?;
            table.watermark = Some(WatermarkDef {
                column,
                expr,
                location,
            });
        } else if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            parser.expect_token(&Token::LParen)?;
            table.primary_key = parser
                .parse_comma_separated(|p| p.parse_identifier())?
                .iter()
                .map(ident_name)
                .collect();
            parser.expect_token(&Token::RParen)?;
            // Flink requires NOT ENFORCED: Weir, like Flink, does not check the key.
            let _ = parser.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
        } else {
            let name = ident_name(&parser.parse_identifier()?);
            let data_type = parser.parse_data_type()?;
            let not_null = parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]);
            if !not_null {
                let _ = parser.parse_keyword(Keyword::NULL);
            }
            let metadata = if parse_word(parser, "METADATA") {
                let key = if parser.parse_keyword(Keyword::FROM) {
                    parser.parse_literal_string()?
                } else {
                    name.clone()
                };
                let is_virtual = parse_word(parser, "VIRTUAL");
                Some(MetadataDef { key, is_virtual })
            } else {
                None
            };
            table.columns.push(ColumnDef {
                name,
                data_type,
                not_null,
                location,
                metadata,
            });
        }
        if parser.consume_token(&Token::Comma) {
            continue;
        }
        parser.expect_token(&Token::RParen)?;
        break;
    }
    if parser.parse_keyword(Keyword::WITH) {
        parser.expect_token(&Token::LParen)?;
        if !parser.consume_token(&Token::RParen) {
            loop {
                let key = parse_string_or_name(parser)?;
                parser.expect_token(&Token::Eq)?;
                let value = parse_string_or_name(parser)?;
                table.options.push((key, value));
                if parser.consume_token(&Token::Comma) {
                    continue;
                }
                parser.expect_token(&Token::RParen)?;
                break;
            }
        }
    }
    Ok(table)
}

fn parse_create_function(
    parser: &mut Parser,
    temporary: bool,
) -> Result<CreateFunction, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = function_name(&parser.parse_object_name(false)?);
    parser.expect_keyword(Keyword::AS)?;
    let export = parser.parse_literal_string()?;
    parser.expect_keyword(Keyword::LANGUAGE)?;
    let language = parser.next_token();
    match &language.token {
        Token::Word(w) if w.value.eq_ignore_ascii_case("wasm") => {}
        _ => {
            return Err(ParserError::ParserError(format!(
                "Weir functions are WebAssembly components: write LANGUAGE WASM, not {} at \
                 Line: {}, Column: {}",
                language.token, language.span.start.line, language.span.start.column
            )));
        }
    }
    parser.expect_keyword(Keyword::USING)?;
    let _ = parser.parse_keyword(Keyword::JAR);
    let path = parser.parse_literal_string()?;
    Ok(CreateFunction {
        name,
        export,
        path,
        temporary,
        if_not_exists,
    })
}

/// Flink writes a lateral table function as `LATERAL TABLE(f(x))`; sqlparser knows `LATERAL f(x)`.
/// Drops the `TABLE (` and its closing `)`.
fn rewrite_lateral_table(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let is_lateral =
            matches!(&tokens[i].token, Token::Word(w) if w.keyword == Keyword::LATERAL);
        out.push(tokens[i].clone());
        i += 1;
        if !is_lateral {
            continue;
        }
        let mut j = i;
        while j < tokens.len() && !significant(&tokens[j]) {
            j += 1;
        }
        if !matches!(tokens.get(j).map(|t| &t.token), Some(Token::Word(w)) if w.keyword == Keyword::TABLE)
        {
            continue;
        }
        let mut k = j + 1;
        while k < tokens.len() && !significant(&tokens[k]) {
            k += 1;
        }
        if tokens.get(k).map(|t| &t.token) != Some(&Token::LParen) {
            continue;
        }
        // Copy what lies between the parentheses.
        let Some(end) = matching_paren(&tokens, k) else {
            continue;
        };
        out.push(TokenWithSpan::wrap(Token::Whitespace(
            datafusion_sql::sqlparser::tokenizer::Whitespace::Space,
        )));
        out.extend(tokens[k + 1..end].iter().cloned());
        i = end + 1;
    }
    out
}

/// The index of the `)` closing the `(` at `open`.
fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (offset, token) in tokens[open..].iter().enumerate() {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(open + offset);
                }
            }
            _ => {}
        }
    }
    None
}

/// The window table functions Flink calls as `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), ...))`.
const WINDOW_FUNCTIONS: [&str; 4] = ["TUMBLE", "HOP", "CUMULATE", "SESSION"];

/// Flink's window table functions in a form sqlparser reads: `TABLE(TUMBLE(TABLE t, ...))`
/// becomes `TUMBLE(t, ...)` (a table function in FROM), and `TABLE (SELECT ...)` as the data
/// argument becomes the subquery `(SELECT ...)`. The window planner takes it from there.
fn rewrite_window_tvf(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let next_significant = |from: usize| {
        (from..tokens.len()).find(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
    };
    let is_table =
        |i: usize| matches!(&tokens[i].token, Token::Word(w) if w.keyword == Keyword::TABLE);
    let mut dropped = vec![false; tokens.len()];
    for i in 0..tokens.len() {
        if !is_table(i) {
            continue;
        }
        let Some(open) = next_significant(i + 1).filter(|&j| tokens[j].token == Token::LParen)
        else {
            continue;
        };
        let Some(function) = next_significant(open + 1).filter(|&j| {
            matches!(&tokens[j].token, Token::Word(w)
                if WINDOW_FUNCTIONS.iter().any(|f| w.value.eq_ignore_ascii_case(f)))
        }) else {
            continue;
        };
        let Some(args_open) =
            next_significant(function + 1).filter(|&j| tokens[j].token == Token::LParen)
        else {
            continue;
        };
        let Some(close) = matching_paren(&tokens, open) else {
            continue;
        };
        dropped[i] = true;
        dropped[open] = true;
        dropped[close] = true;
        if let Some(data) = next_significant(args_open + 1).filter(|&j| is_table(j)) {
            dropped[data] = true;
        }
    }
    tokens
        .into_iter()
        .zip(dropped)
        .filter_map(|(token, dropped)| (!dropped).then_some(token))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        let mut all = parse_script(sql).expect("parses");
        assert_eq!(all.len(), 1);
        all.remove(0).statement
    }

    #[test]
    fn watermark_delays_in_flink_forms() {
        let delay = |watermark: &str| {
            let Statement::CreateTable(t) = one(&format!(
                "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS {watermark}) WITH ()"
            )) else {
                panic!("not a table")
            };
            t.watermark.expect("watermark").delay_millis()
        };
        assert_eq!(delay("ts"), Ok(0));
        assert_eq!(delay("ts - INTERVAL '5' SECOND"), Ok(5_000));
        assert_eq!(delay("(ts - INTERVAL '0.25' SECONDS)"), Ok(250));
        assert_eq!(delay("ts - INTERVAL '2' MINUTE"), Ok(120_000));
        assert_eq!(delay("ts - INTERVAL '1 hour'"), Ok(3_600_000));
        assert_eq!(delay("ts - INTERVAL '10' MILLISECOND"), Ok(10));
        for bad in [
            "ts + INTERVAL '5' SECOND",
            "ts - INTERVAL '-5' SECOND",
            "ts - INTERVAL '1' MONTH",
            "other - INTERVAL '5' SECOND",
            "ts - 5",
        ] {
            let error = delay(bad).expect_err(bad);
            assert!(error.contains("bounded out-of-orderness"), "{bad}: {error}");
        }
    }

    #[test]
    fn create_table_with_watermark_key_and_options() {
        let Statement::CreateTable(t) = one(
            "CREATE TABLE IF NOT EXISTS Orders (id BIGINT NOT NULL, ts TIMESTAMP(3), \
             `Name` STRING, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND, \
             PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'filesystem', 'path' = 'x.csv')",
        ) else {
            panic!("not a table")
        };
        assert_eq!(t.name, "Orders");
        assert!(t.if_not_exists);
        let names: Vec<_> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "ts", "Name"]);
        assert!(t.columns[0].not_null);
        let watermark = t.watermark.expect("watermark");
        assert_eq!(watermark.column, "ts");
        assert_eq!(watermark.expr.to_string(), "ts - INTERVAL '5' SECOND");
        assert_eq!(t.primary_key, ["id"]);
        assert_eq!(
            t.options,
            [
                ("connector".to_string(), "filesystem".to_string()),
                ("path".to_string(), "x.csv".to_string())
            ]
        );
    }

    #[test]
    fn metadata_columns_name_their_key_or_default_to_the_column() {
        let Statement::CreateTable(t) = one(
            "CREATE TABLE k (v STRING, `offset` BIGINT METADATA VIRTUAL,              ts TIMESTAMP(3) METADATA FROM 'timestamp', p INT NOT NULL METADATA FROM 'partition' VIRTUAL)              WITH ('connector' = 'kafka')",
        ) else {
            panic!("not a table")
        };
        let metadata: Vec<_> = t.columns.iter().map(|c| c.metadata.clone()).collect();
        let def = |key: &str, is_virtual| {
            Some(MetadataDef {
                key: key.into(),
                is_virtual,
            })
        };
        assert_eq!(
            metadata,
            [
                None,
                def("offset", true),
                def("timestamp", false),
                def("partition", true)
            ]
        );
        assert!(t.columns[3].not_null);
        let error = parse_script("CREATE TABLE k (o BIGINT METADATA FROM offset) WITH ()")
            .expect_err("an unquoted key");
        assert_eq!(error.location().map(|l| l.column), Some(40), "{error}");
    }

    #[test]
    fn create_function_in_both_forms() {
        for sql in [
            "CREATE TEMPORARY FUNCTION IF NOT EXISTS usd AS 'to_usd' LANGUAGE WASM USING JAR 'm.wasm'",
            "CREATE FUNCTION usd AS 'to_usd' LANGUAGE WASM USING 'm.wasm'",
        ] {
            let Statement::CreateFunction(f) = one(sql) else {
                panic!("not a function")
            };
            assert_eq!((f.name.as_str(), f.export.as_str()), ("usd", "to_usd"));
            assert_eq!(f.path, "m.wasm");
        }
        let error = parse_script("CREATE FUNCTION f AS 'g' LANGUAGE JAVA USING JAR 'x.jar'")
            .expect_err("java");
        assert!(error.to_string().contains("LANGUAGE WASM"), "{error}");
    }

    #[test]
    fn script_of_several_statements() {
        let all = parse_script(
            "SET 'parallelism.default' = '2';\nSHOW TABLES; SHOW FUNCTIONS;\n\
             EXPLAIN SELECT 1;\nINSERT INTO t SELECT * FROM s;",
        )
        .expect("parses");
        assert_eq!(all.len(), 5);
        assert!(
            matches!(&all[0].statement, Statement::Set { key, value } if key == "parallelism.default" && value == "2")
        );
        assert!(matches!(
            all[3].statement,
            Statement::Query { explain: true, .. }
        ));
        assert_eq!(all[3].location.line, 3);
    }

    #[test]
    fn lateral_table_becomes_lateral_function() {
        let Statement::Query { statement, .. } =
            one("SELECT s FROM t, LATERAL TABLE(split(t.x, ',')) AS T(s)")
        else {
            panic!("not a query")
        };
        assert_eq!(
            statement.to_string(),
            "SELECT s FROM t, LATERAL split(t.x, ',') AS T (s)"
        );
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let error = parse_script("SELECT 1;\nSELEC 2").expect_err("typo");
        let SqlError::Syntax { location, .. } = error else {
            panic!("{error:?}")
        };
        assert_eq!((location.line, location.column), (2, 1));
        let error = parse_script("CREATE TABLE t (a INT,, b INT)").expect_err("comma");
        assert!(error.to_string().contains("line 1, column 23"), "{error}");
    }
}
