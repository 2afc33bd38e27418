//! Delivery: the dispatcher task takes the deliveries that are due from the store (leased, so
//! none is sent twice at once) and sends each in a task of its own, at most [`IN_FLIGHT`] at a
//! time. One attempt is one POST with the Standard Webhooks headers, through a client of its
//! own (not the upstream's): short timeout, redirects not followed, names resolved through the
//! SSRF guard, at most [`BODY_READ`] bytes of the answer read. A 2xx ends the delivery; anything
//! else is retried by the backoff schedule, and after the last attempt the registration is
//! disabled with the reason.
//!
//! The dispatcher owns its attempt tasks (a `JoinSet`): aborting it (the [`super::Webhooks`]
//! that owns it is dropped) aborts them; an attempt cut off this way stays leased until the next
//! start clears the lease, and is then sent again (at least once).

use super::backoff::Backoff;
use super::guard::{self, GuardedResolver, Policy};
use super::store::{Attempt, Due, Next, WebhookStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Attempts in flight at once per gateway.
pub const IN_FLIGHT: usize = 16;
/// Bytes of a receiver's answer read (and thrown away) at most.
pub const BODY_READ: usize = 16 * 1024;
/// How often the store is asked for due deliveries when nothing wakes the dispatcher.
const TICK: Duration = Duration::from_millis(250);

/// Unix time now, in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// What a dispatcher needs.
#[derive(Clone)]
pub struct Dispatcher {
    pub store: WebhookStore,
    pub client: reqwest::Client,
    pub policy: Policy,
    pub backoff: Backoff,
    pub timeout: Duration,
    /// Attempts kept in each registration's delivery log.
    pub log_size: usize,
}

/// The delivery client: no redirects, the SSRF guard as its resolver, `timeout` per attempt.
pub fn client(policy: Policy, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver(policy)))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("ats-gateway-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("webhook client: {e}"))
}

impl Dispatcher {
    /// Runs until aborted: takes due deliveries and attempts them.
    pub async fn run(self, wake: Arc<Notify>) {
        let mut attempts = tokio::task::JoinSet::new();
        let lease_ms = (self.timeout + Duration::from_secs(30)).as_millis() as i64;
        loop {
            let room = IN_FLIGHT.saturating_sub(attempts.len());
            if room > 0 {
                match self.store.claim_due(now_ms(), lease_ms, room).await {
                    Ok(due) => {
                        for d in due {
                            attempts.spawn(self.clone().attempt(d));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "webhooks: cannot read due deliveries"),
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            }
        }
    }

    /// One attempt of `due`, recorded with what follows it.
    async fn attempt(self, due: Due) {
        let number = due.attempts + 1;
        let started = Instant::now();
        let outcome = self.send(&due).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (status, error) = match &outcome {
            Ok(status) => (Some(*status), None),
            Err(e) => (None, Some(e.clone())),
        };
        let next = match status {
            Some(s) if (200..300).contains(&s) => Next::Delivered,
            _ => match self.backoff.after_failure(number) {
                Some(wait) => Next::RetryAt(now_ms() + wait.as_millis() as i64),
                None => Next::GiveUp(format!(
                    "event {} failed {number} attempts, the last {}",
                    due.event_id,
                    match (&status, &error) {
                        (Some(s), _) => format!("with status {s}"),
                        (_, Some(e)) => format!("with: {e}"),
                        _ => String::new(),
                    }
                )),
            },
        };
        tracing::info!(
            webhook = %due.subscription_id,
            event = %due.event_id,
            attempt = number,
            status = status.map(i64::from),
            latency_ms,
            outcome = match &next { Next::Delivered => "delivered", Next::RetryAt(_) => "retry", Next::GiveUp(_) => "disabled" },
            "webhook attempt"
        );
        let attempt = Attempt {
            event_id: due.event_id.clone(),
            attempt: number,
            status,
            error,
            latency_ms,
            at: now_ms(),
        };
        if let Err(e) = self.store.record(&due, attempt, next, self.log_size).await {
            tracing::error!(error = %e, "webhooks: cannot record an attempt");
        }
    }

    /// POSTs the delivery; the status, or why there is none.
    async fn send(&self, due: &Due) -> Result<u16, String> {
        let url = guard::check_url(&due.url, self.policy)?;
        let timestamp = now_ms() / 1000;
        let signature = super::signing::sign(due.secret.expose(), &due.event_id, timestamp, &due.body)
            .ok_or("the registration's secret is not a whsec_ secret")?;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &due.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(due.body.clone())
            .send()
            .await
            .map_err(describe)?;
        let status = response.status().as_u16();
        drain(response).await;
        Ok(status)
    }
}

/// Reads at most [`BODY_READ`] bytes of the answer, so that the connection may be reused.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read >= BODY_READ {
            break;
        }
    }
}

/// A failed send in a few words (with the guard's refusal when it was that).
fn describe(e: reqwest::Error) -> String {
    use std::error::Error;
    let mut why = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        if s.to_string().contains("webhook URL") {
            why = format!("{why}: {s}");
            break;
        }
        source = s.source();
    }
    why
}
