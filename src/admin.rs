//! Admin server of watch mode: `/healthz` (the loop ticks), `/readyz` (the first good pass is done and no
//! shutdown has begun) and `/metrics` (Prometheus, see [`crate::metrics`]).
//!
//! kubert's split: liveness says only that the loop is not stuck, so a failing vault never gets the pod killed
//! (it would not help); readiness turns true after the first good pass and false as soon as shutdown begins.
//! `/live` and `/ready` are accepted as aliases of `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::{CONTENT_TYPE, Metrics};

/// What the loop tells the admin server.
pub struct Health {
    ready: AtomicBool,
    shutting_down: AtomicBool,
    /// The loop promises to tick again before this instant; past it, `/healthz` fails.
    deadline: Mutex<Instant>,
}

impl Health {
    /// Not ready; live for `startup` (the loop has that long to make its first promise).
    pub fn new(startup: Duration) -> Self {
        Self {
            ready: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            deadline: Mutex::new(Instant::now() + startup),
        }
    }

    /// The loop is alive and will tick again within `within`.
    pub fn tick(&self, within: Duration) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + within;
    }

    /// Whether the loop kept its last promise.
    pub fn is_live(&self) -> bool {
        Instant::now() <= *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the replica ready (a good pass is done, or a standby's watches are warm).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Shutdown began: readiness is false from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Ready and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutting_down.load(Ordering::Acquire)
    }

    /// Whether shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AdminState {
    health: Arc<Health>,
    metrics: Metrics,
}

/// The admin routes.
pub fn router(health: Arc<Health>, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/live", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ready", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AdminState { health, metrics })
}

/// Binds `addr` and serves the admin routes in a background task. Binding happens before this returns, so a
/// taken port is reported at startup.
pub async fn serve(addr: SocketAddr, health: Arc<Health>, metrics: Metrics) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(health, metrics);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "admin server stopped");
        }
    });
    Ok(local)
}

async fn healthz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.health.is_live() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the sync loop is stuck\n")
    }
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if s.health.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no successful pass yet\n")
    }
}

async fn metrics_handler(State(s): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_a_good_pass_and_ends_with_shutdown() {
        let h = Health::new(Duration::from_secs(5));
        assert!(!h.is_ready());
        h.set_ready();
        assert!(h.is_ready());
        h.begin_shutdown();
        assert!(!h.is_ready());
    }

    #[test]
    fn liveness_fails_once_the_loop_misses_its_promise() {
        let h = Health::new(Duration::from_secs(5));
        assert!(h.is_live());
        h.tick(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!h.is_live());
    }
}
