//! The read-only guard of the Postgres endpoint. Every connection shares one
//! DataFusion session, so a statement may read and nothing else: the guard
//! plans each query itself and checks the plan, lets through the session-local
//! statements the built-in hooks answer (SET of client settings, SHOW,
//! transactions, cursors), and refuses the rest with SQLSTATE 25006.
//!
//! ```text
//!  SQL ─▶ screen (DataFusion-only syntax: COPY TO, CREATE EXTERNAL TABLE, RESET)
//!      ─▶ datafusion-postgres parser ─▶ ReadOnlyHook ─▶ cursor, SET/SHOW, transaction hooks
//!                                            └─ plan + read_only().verify_plan ─▶ run
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{ObjectName, Set, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::{DfSessionService, QueryHook};

use crate::AnalyzerError;
use crate::session::read_only;

/// SQLSTATE `read_only_sql_transaction`, what PostgreSQL answers on a hot standby.
pub const READ_ONLY_SQLSTATE: &str = "25006";

/// The hooks of every connection: the guard first (the first hook that answers wins).
pub fn hooks() -> Vec<Arc<dyn QueryHook>> {
    vec![
        Arc::new(ReadOnlyHook),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ]
}

/// The session service of every connection, behind the guard.
pub fn session(ctx: Arc<SessionContext>) -> DfSessionService {
    DfSessionService::new_with_hooks(ctx, hooks())
}

/// Why a statement is refused, and what to do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// COPY, which writes files on the server.
    Copy,
    /// INSERT, UPDATE, DELETE and friends.
    Data,
    /// CREATE, DROP, ALTER, SELECT … INTO: tables and views every connection sees.
    Schema,
    /// SET or RESET of a DataFusion setting, shared by every connection.
    Setting,
    /// Anything else that is not a query.
    Other,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Copy => {
                "COPY writes files on the server. To export a result, run \
                 loadlens sql --data DIR --format parquet -o result.parquet \"SELECT …\" \
                 (or --format csv|json) where the store is, or psql --csv -c \"SELECT …\" \
                 > result.csv from the client."
            }
            Refusal::Data => "The store is written only by the collector.",
            Refusal::Schema => {
                "Tables and views are shared by every connection; name a subquery \
                 with WITH name AS (…) SELECT … instead."
            }
            Refusal::Setting => {
                "DataFusion settings are shared by every connection; only client \
                 settings (statement_timeout, search_path, TIME ZONE, …) can be SET. \
                 To change an engine setting, restart loadlens serve with it in the \
                 environment, such as DATAFUSION_EXECUTION_BATCH_SIZE=8192."
            }
            Refusal::Other => {
                "Only queries (SELECT, WITH, VALUES, EXPLAIN, SHOW), SET of client \
                 settings, transactions and cursors are allowed."
            }
        }
    }

    /// The error the client sees.
    pub fn error(self, statement: &str) -> PgWireError {
        user_error(
            READ_ONLY_SQLSTATE,
            format!(
                "loadlens serve is read-only: {statement} is refused. {}",
                self.reason()
            ),
        )
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

/// One statement for a caller outside the Postgres protocol (the HTTP API):
/// screened, parsed and judged as the Postgres endpoint does; only a query
/// passes, as its checked plan.
pub async fn plan_query(
    parser: &PostgresCompatibilityParser,
    sql: &str,
    ctx: &SessionContext,
) -> PgWireResult<LogicalPlan> {
    screen(sql)?;
    let mut statements = parser
        .parse(sql)
        .map_err(|e| user_error("42601", format!("invalid SQL: {e}")))?;
    if statements.len() != 1 {
        return Err(user_error(
            "42601",
            format!("send one statement at a time, not {}", statements.len()),
        ));
    }
    let statement = statements.remove(0);
    match judge(&statement, ctx).await? {
        Verdict::Planned(plan) => Ok(*plan),
        Verdict::PassOn | Verdict::Rewritten(_) => Err(user_error(
            "0A000",
            format!(
                "{} only makes sense in a Postgres session; the HTTP API runs queries",
                leading_words(&statement)
            ),
        )),
    }
}

/// What the guard decided about one parsed statement.
#[derive(Debug)]
pub enum Verdict {
    /// A query, planned and checked.
    Planned(Box<LogicalPlan>),
    /// Session-local: the built-in hooks answer it.
    PassOn,
    /// `SET timezone = …`: DataFusion would apply it to every connection, so it
    /// is answered as `SET TIME ZONE …`, which stays with the connection.
    Rewritten(Box<Statement>),
}

/// Judges one statement of the datafusion-postgres parser.
pub async fn judge(statement: &Statement, ctx: &SessionContext) -> PgWireResult<Verdict> {
    match statement {
        Statement::Query(_)
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowDatabases { .. } => plan(statement, ctx)
            .await
            .map(|plan| Verdict::Planned(Box::new(plan))),
        Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Ok(Verdict::PassOn),
        Statement::Declare { stmts } => {
            // The cursor hook runs the query itself, with DataFusion's defaults.
            for declare in stmts {
                if let Some(query) = &declare.for_query {
                    plan(&Statement::Query(query.clone()), ctx).await?;
                }
            }
            Ok(Verdict::PassOn)
        }
        Statement::Set(set) => judge_set(set),
        Statement::Copy { .. } => Err(Refusal::Copy.error("COPY")),
        Statement::Insert(_)
        | Statement::Update { .. }
        | Statement::Delete(_)
        | Statement::Merge { .. }
        | Statement::Truncate { .. } => Err(Refusal::Data.error(&leading_words(statement))),
        Statement::CreateTable(_)
        | Statement::CreateView { .. }
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateIndex(_)
        | Statement::Drop { .. }
        | Statement::DropFunction { .. }
        | Statement::AlterTable { .. }
        | Statement::AlterView { .. } => Err(Refusal::Schema.error(&leading_words(statement))),
        other => Err(Refusal::Other.error(&leading_words(other))),
    }
}

fn judge_set(set: &Set) -> PgWireResult<Verdict> {
    let shared = |name: &ObjectName| {
        let name = name.to_string().to_lowercase();
        // DataFusion applies any namespaced key (datafusion.*, extensions) to the session.
        name.contains('.')
    };
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = variable.to_string().to_lowercase();
            if shared(variable) {
                return Err(Refusal::Setting.error(&format!("SET {name}")));
            }
            if name == "timezone"
                && let [value] = values.as_slice()
            {
                return Ok(Verdict::Rewritten(Box::new(Statement::Set(
                    Set::SetTimeZone {
                        local: false,
                        value: value.clone(),
                    },
                ))));
            }
            Ok(Verdict::PassOn)
        }
        Set::MultipleAssignments { assignments } => {
            match assignments.iter().find(|a| shared(&a.name)) {
                Some(a) => Err(Refusal::Setting.error(&format!("SET {}", a.name))),
                None => Ok(Verdict::PassOn),
            }
        }
        Set::ParenthesizedAssignments { variables, .. } => {
            match variables.iter().find(|name| shared(name)) {
                Some(name) => Err(Refusal::Setting.error(&format!("SET {name}"))),
                None => Ok(Verdict::PassOn),
            }
        }
        _ => Ok(Verdict::PassOn),
    }
}

/// Plans a statement and checks that the plan only reads.
async fn plan(statement: &Statement, ctx: &SessionContext) -> PgWireResult<LogicalPlan> {
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
        .await
        .map_err(|e| planning_error(e, ctx))?;
    if read_only().verify_plan(&plan).is_err() {
        let (refusal, what) = offending_node(&plan);
        return Err(refusal.error(&what));
    }
    Ok(plan)
}

/// The first node of `plan` that does more than read, named for the user.
fn offending_node(plan: &LogicalPlan) -> (Refusal, String) {
    let mut found = (Refusal::Other, "this statement".to_string());
    let _ = plan.apply_with_subqueries(|node| {
        let verdict = match node {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_)) => {
                Some((Refusal::Schema, "SELECT … INTO".to_string()))
            }
            LogicalPlan::Ddl(ddl) => Some((Refusal::Schema, ddl.name().to_string())),
            LogicalPlan::Dml(dml) => Some((Refusal::Data, dml.op.to_string().to_uppercase())),
            LogicalPlan::Copy(_) => Some((Refusal::Copy, "COPY".to_string())),
            LogicalPlan::Statement(statement) => {
                Some((Refusal::Other, statement.name().to_string()))
            }
            _ => None,
        };
        Ok(match verdict {
            Some(v) => {
                found = v;
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    });
    found
}

/// A planning error as the client sees it: a mistake in the query (42000) or
/// a failure of the server (XX000).
fn planning_error(e: datafusion::error::DataFusionError, ctx: &SessionContext) -> PgWireError {
    let tables: Vec<String> = ctx
        .catalog("datafusion")
        .and_then(|c| c.schema("public"))
        .map(|s| s.table_names())
        .unwrap_or_default();
    let error = AnalyzerError::from_datafusion(e, &tables);
    let code = if error.is_usage() { "42000" } else { "XX000" };
    user_error(code, error.to_string())
}

/// The statement's leading keywords, e.g. `DROP VIEW`, `CREATE TABLE`.
fn leading_words(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect();
    if words.is_empty() {
        "this statement".to_string()
    } else {
        words.join(" ")
    }
}

/// Refuses what only DataFusion's own parser understands (and so never reaches
/// the hooks as a statement): `COPY … TO`, `CREATE EXTERNAL TABLE`, `RESET`.
/// Text it cannot parse is left to the Postgres parser and its error.
pub fn screen(sql: &str) -> PgWireResult<()> {
    let Ok(statements) = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) else {
        return Ok(());
    };
    statements.iter().try_for_each(screen_statement)
}

fn screen_statement(statement: &DfStatement) -> PgWireResult<()> {
    match statement {
        DfStatement::Statement(_) => Ok(()),
        DfStatement::CreateExternalTable(_) => Err(Refusal::Schema.error("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(Refusal::Copy.error("COPY")),
        DfStatement::Reset(_) => Err(Refusal::Setting.error("RESET")),
        DfStatement::Explain(explain) => screen_statement(&explain.statement),
    }
}

/// The guard as a query hook.
#[derive(Debug)]
pub struct ReadOnlyHook;

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match judge(statement, ctx).await {
            Err(e) => Some(Err(e)),
            Ok(Verdict::Rewritten(statement)) => {
                SetShowHook
                    .handle_simple_query(&statement, ctx, client)
                    .await
            }
            // A checked query runs on the default path, which plans the same
            // statement again with the same session.
            Ok(Verdict::Planned(_) | Verdict::PassOn) => None,
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match judge(statement, ctx).await {
            Err(e) => Some(Err(e)),
            Ok(Verdict::Planned(plan)) => Some(Ok(*plan)),
            Ok(Verdict::PassOn | Verdict::Rewritten(_)) => None,
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Judged when parsed; only the SET rewrite must be applied again,
        // because the portal holds the original statement.
        if let Statement::Set(set) = statement
            && let Ok(Verdict::Rewritten(statement)) = judge_set(set)
        {
            return SetShowHook
                .handle_extended_query(&statement, plan, params, ctx, client)
                .await;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::Store;

    /// A served store over an empty folder: the tables exist, with no rows.
    async fn store() -> Store {
        let dir = std::env::temp_dir().join(format!(
            "loadlens-read-only-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::serve::open(&dir, &crate::session::Options::default())
            .await
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        store
    }

    fn parse(sql: &str) -> Statement {
        let mut statements = PostgresCompatibilityParser::new().parse(sql).unwrap();
        assert_eq!(statements.len(), 1, "{sql}");
        statements.remove(0)
    }

    /// The SQLSTATE and message of a refusal or error.
    fn error_of(e: PgWireError) -> (String, String) {
        match e {
            PgWireError::UserError(info) => (info.code.clone(), info.message.clone()),
            other => panic!("not a user error: {other}"),
        }
    }

    async fn judged(store: &Store, sql: &str) -> Result<Verdict, (String, String)> {
        judge(&parse(sql), store.context()).await.map_err(error_of)
    }

    async fn refused(store: &Store, sql: &str) -> String {
        match judged(store, sql).await {
            Err((code, message)) if code == READ_ONLY_SQLSTATE => message,
            other => panic!("{sql} was not refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn queries_are_planned_and_pass() {
        let store = store().await;
        for sql in [
            "SELECT COUNT(*) FROM requests",
            "WITH r AS (SELECT * FROM requests) SELECT step, percentile(latency_ms, 0.99) FROM r GROUP BY step",
            "VALUES (1), (2)",
            "EXPLAIN SELECT * FROM spans",
            "SHOW TABLES",
            "SELECT relname FROM pg_catalog.pg_class",
        ] {
            assert!(
                matches!(judged(&store, sql).await, Ok(Verdict::Planned(_))),
                "{sql}: {:?}",
                judged(&store, sql).await
            );
        }
    }

    #[tokio::test]
    async fn writes_are_refused_with_what_to_do_instead() {
        let store = store().await;
        let copy = refused(&store, "COPY (SELECT 1) TO '/tmp/x.csv'").await;
        assert!(
            copy.contains("COPY is refused")
                && copy.contains("loadlens sql --data DIR --format parquet -o result.parquet")
                && copy.contains("psql --csv"),
            "{copy}"
        );
        for (sql, name) in [
            ("INSERT INTO runs (scenario) VALUES ('x')", "INSERT INTO"),
            ("DELETE FROM spans", "DELETE FROM"),
            ("DROP VIEW requests", "DROP VIEW"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("CREATE TABLE t (a INT)", "CREATE TABLE"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("SELECT 1 INTO t", "SELECT … INTO"),
            (
                "WITH x AS (SELECT 1 AS a) SELECT a INTO t FROM x",
                "SELECT … INTO",
            ),
            ("DECLARE c CURSOR FOR SELECT 1 INTO t", "SELECT … INTO"),
            ("EXPLAIN ANALYZE SELECT 1 INTO t", "SELECT … INTO"),
            (
                "EXPLAIN ANALYZE INSERT INTO store.runs (scenario) VALUES ('x')",
                "INSERT INTO",
            ),
        ] {
            let message = refused(&store, sql).await;
            assert!(
                message.starts_with(&format!("loadlens serve is read-only: {name}")),
                "{sql}: {message}"
            );
        }
        // Planning mistakes are the user's, not refusals.
        let (code, message) = judged(&store, "SELECT nope FROM requests")
            .await
            .unwrap_err();
        assert_eq!(code, "42000", "{message}");
    }

    #[tokio::test]
    async fn settings_shared_by_every_connection_are_refused() {
        let store = store().await;
        for sql in [
            "SET datafusion.execution.batch_size = 1",
            "SET LOCAL datafusion.execution.target_partitions = 1",
        ] {
            let message = refused(&store, sql).await;
            assert!(message.contains("settings are shared"), "{message}");
        }
        for sql in [
            "SET application_name = 'grafana'",
            "SET statement_timeout = '5s'",
            "SET TIME ZONE 'UTC'",
            "SET extra_float_digits = 3",
            "BEGIN",
            "COMMIT",
            "SHOW search_path",
        ] {
            assert!(
                matches!(judged(&store, sql).await, Ok(Verdict::PassOn)),
                "{sql}"
            );
        }
        match judged(&store, "SET timezone = 'Europe/Paris'").await {
            Ok(Verdict::Rewritten(statement)) => {
                assert_eq!(statement.to_string(), "SET TIME ZONE 'Europe/Paris'")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_screen_refuses_datafusion_only_writes() {
        for (sql, name) in [
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            (
                "COPY (SELECT 1) TO '/tmp/x.parquet' STORED AS PARQUET",
                "COPY",
            ),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            ("SELECT 1; COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
        ] {
            let (code, message) = error_of(screen(sql).unwrap_err());
            assert_eq!(code, READ_ONLY_SQLSTATE);
            assert!(message.contains(&format!("{name} is refused")), "{message}");
        }
        for sql in [
            "SELECT 1",
            "SELECT 'COPY'",
            "not sql at all",
            "SELECT x::regclass",
        ] {
            assert!(screen(sql).is_ok(), "{sql}");
        }
    }

    #[tokio::test]
    async fn no_table_function_reads_files() {
        let store = store().await;
        let functions: BTreeSet<String> = store
            .context()
            .state()
            .table_functions()
            .keys()
            .cloned()
            .collect();
        // critical_path reads the store's tables through the session, not files.
        let expected: BTreeSet<String> = [
            "generate_series",
            "range",
            "pg_get_keywords",
            "critical_path",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(functions, expected);
        // Nor does a path read as a table.
        let (code, _) = judged(&store, "SELECT * FROM '/etc/passwd'")
            .await
            .unwrap_err();
        assert_eq!(code, "42000");
    }
}
