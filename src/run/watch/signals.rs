//! Shutdown signals of `watch`: the first SIGTERM/SIGINT turns readiness off and asks the loop to stop
//! gracefully; a second one aborts at once.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::admin::Health;

/// Exit code of an aborted shutdown (second signal), like a shell's 128 + SIGINT.
pub const ABORT_EXIT_CODE: i32 = 130;

/// First signal: readiness off and a graceful stop; second: abort.
pub(super) fn install_signals(health: Arc<Health>) -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut received = 0u32;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            received += 1;
            if received == 1 {
                tracing::info!(
                    signal = name,
                    "shutting down: finishing the pass in flight, then releasing the lease (send the signal again to abort)"
                );
                health.begin_shutdown();
                let _ = tx.send(true);
            } else {
                tracing::warn!(signal = name, exit_code = ABORT_EXIT_CODE, "second signal: aborting");
                std::process::exit(ABORT_EXIT_CODE);
            }
        }
    });
    Ok(rx)
}

pub(super) async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    // A closed channel (the signal task ended) must not look like a shutdown request every poll.
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
