//! The HTTP server: the axum router and a listener that drains in-flight requests on SIGINT/SIGTERM.

use std::future::Future;
use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

/// The HTTP listener could not be opened or failed while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is taken, not local, or not permitted.
    #[error("cannot listen on COMMERCE_HTTP_ADDR={addr}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Accepting connections failed.
    #[error("the HTTP server stopped")]
    Serve(#[source] std::io::Error),
}

/// The API's routes.
pub fn router() -> Router {
    Router::new().route("/health", get(health))
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
}

/// Liveness: answers as long as the process serves HTTP.
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// A bound listener, so callers learn the actual address before serving (port 0 in tests).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
}

impl Server {
    /// Binds the listen address.
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self { listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(ServerError::Serve)
    }

    /// Serves `app` until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve)
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};

    let wait_for = |kind: SignalKind, name: &'static str| async move {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
                tracing::info!(signal = name, "shutting down");
            }
            // Without the handler the signal keeps its default action (terminate the process).
            Err(error) => {
                tracing::warn!(%error, signal = name, "cannot listen for the signal");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = wait_for(SignalKind::interrupt(), "SIGINT") => {}
        () = wait_for(SignalKind::terminate(), "SIGTERM") => {}
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn health_answers_status_ok() {
        // Given the API's router
        let app = router();
        // When a client asks for /health
        let response = app
            .oneshot(
                Request::get("/health")
                    .body(Body::empty())
                    .expect("valid request"),
            )
            .await
            .expect("the router is infallible");
        // Then it answers 200 {"status":"ok"}
        assert_eq!(response.status(), StatusCode::OK);
        let body = to_bytes(response.into_body(), 1024)
            .await
            .expect("small body");
        assert_eq!(&body[..], br#"{"status":"ok"}"#);
    }
}
