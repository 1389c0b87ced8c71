//! The Postgres wire endpoint: an accept loop that hands each connection to
//! pgwire, with the shared DataFusion session behind the read-only guard and a
//! startup handshake that asks for no password, or for one password with
//! SCRAM-SHA-256 (over TLS when a certificate is given).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::{TlsAcceptor, process_socket};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::rustls::ServerConfig;

use super::read_only;

/// The ALPN protocol name of PostgreSQL 17's direct TLS connections.
pub const ALPN: &[u8] = b"postgresql";

/// What every connection shares.
pub struct PgServer {
    session: Arc<Guarded>,
    password: Option<Arc<ScramPassword>>,
    tls: Option<TlsAcceptor>,
}

impl PgServer {
    /// `password`: the one password every user name must give; `tls`: a rustls
    /// configuration that offers [`ALPN`].
    pub fn new(
        ctx: Arc<SessionContext>,
        password: Option<&str>,
        tls: Option<Arc<ServerConfig>>,
    ) -> PgServer {
        PgServer {
            session: Arc::new(Guarded::new(ctx)),
            password: password.map(|p| Arc::new(ScramPassword::new(p))),
            tls: tls.map(TlsAcceptor::from),
        }
    }

    /// Accepts connections until `stop` turns true, then closes the open ones.
    pub async fn serve(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let handlers = self.connection();
                        let tls = self.tls.clone();
                        // A broken connection concerns only that client.
                        connections.spawn(async move {
                            let _ = process_socket(tcp, tls, handlers).await;
                        });
                    }
                    // Out of file descriptors and the like: wait, do not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            }
        }
        // Clients such as Grafana keep connections open for good; a query in
        // flight is cut off like PostgreSQL's fast shutdown does.
        connections.shutdown().await;
    }

    fn connection(&self) -> Connection {
        let login = match &self.password {
            None => Login::Open(OpenStartup),
            Some(password) => Login::Scram(Box::new(
                SASLAuthStartupHandler::new(Arc::new(parameters()))
                    .with_scram(ScramAuth::new(password.clone())),
            )),
        };
        Connection {
            session: self.session.clone(),
            startup: Arc::new(Startup {
                require_tls: self.tls.is_some(),
                login,
            }),
        }
    }
}

/// The server parameters sent after a successful login.
fn parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.default_transaction_read_only = true;
    parameters.is_superuser = false;
    parameters
}

/// The handlers of one connection. The startup handler keeps the state of the
/// SCRAM exchange, so each connection gets its own.
struct Connection {
    session: Arc<Guarded>,
    startup: Arc<Startup>,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// The handshake: TLS first when configured, then the login.
struct Startup {
    /// With a certificate, plain connections are refused, as the collector's
    /// receivers speak TLS only.
    require_tls: bool,
    login: Login,
}

enum Login {
    Open(OpenStartup),
    Scram(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.require_tls && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_string(),
                // invalid_authorization_specification, as pg_hba's hostssl answers
                "28000".to_string(),
                "loadlens serve accepts TLS connections only; connect with sslmode=require"
                    .to_string(),
            ))));
        }
        let startup = matches!(message, PgWireFrontendMessage::Startup(_));
        match &self.login {
            Login::Open(handler) => handler.on_startup(client, message).await?,
            Login::Scram(handler) => handler.on_startup(client, message).await?,
        }
        if startup {
            // What SHOW answers for these (the built-in hook reads the metadata).
            for name in ["default_transaction_read_only", "transaction_read_only"] {
                client
                    .metadata_mut()
                    .insert(name.to_string(), "on".to_string());
            }
        }
        Ok(())
    }
}

/// No authentication.
struct OpenStartup;

#[async_trait]
impl NoopStartupHandler for OpenStartup {
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The no-password handshake announces pgwire's default parameters;
        // these two replace the defaults, as a later ParameterStatus does.
        let ours = parameters();
        for (name, on) in [
            (
                "default_transaction_read_only",
                ours.default_transaction_read_only,
            ),
            ("is_superuser", ours.is_superuser),
        ] {
            let value = if on { "on" } else { "off" };
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_string(),
                    value.to_string(),
                )))
                .await?;
        }
        Ok(())
    }
}

/// The password as SCRAM needs it: salted and hashed once at start.
struct ScramPassword {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl ScramPassword {
    fn new(password: &str) -> ScramPassword {
        let salt = rand::random::<[u8; 16]>().to_vec();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        ScramPassword { salt, salted }
    }
}

impl Debug for ScramPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramPassword { .. }")
    }
}

#[async_trait]
impl AuthSource for ScramPassword {
    /// Any user name: there is one password.
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

type Statement = <datafusion_postgres::DfSessionService as ExtendedQueryHandler>::Statement;

/// The session service with [`read_only::screen`] in front of both protocols.
pub struct Guarded {
    inner: datafusion_postgres::DfSessionService,
    parser: Arc<GuardedParser>,
}

impl Guarded {
    fn new(ctx: Arc<SessionContext>) -> Guarded {
        let inner = read_only::session(ctx);
        let parser = Arc::new(GuardedParser(ExtendedQueryHandler::query_parser(&inner)));
        Guarded { inner, parser }
    }
}

#[async_trait]
impl SimpleQueryHandler for Guarded {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        read_only::screen(query)?;
        SimpleQueryHandler::do_query(&self.inner, client, query).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for Guarded {
    type Statement = Statement;
    type QueryParser = GuardedParser;

    fn query_parser(&self) -> Arc<GuardedParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        ExtendedQueryHandler::do_query(&self.inner, client, portal, max_rows).await
    }
}

/// datafusion-postgres's parser with [`read_only::screen`] in front.
pub struct GuardedParser(Arc<datafusion_postgres::Parser>);

#[async_trait]
impl QueryParser for GuardedParser {
    type Statement = Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        read_only::screen(sql)?;
        self.0.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, statement: &Statement) -> PgWireResult<Vec<Type>> {
        self.0.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.0.get_result_schema(statement, column_format)
    }
}
