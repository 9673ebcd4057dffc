//! Streamed requests. Endpoints are tried in order until one starts streaming; fallback is
//! possible until the first content reaches the client (keep-alive comments sent while
//! waiting are not content). After that, an upstream failure ends the stream with an error
//! chunk. A client that disconnects stops the upstream; what was produced is billed.

use std::time::{Duration, Instant};

use llmux_protocol::ProtocolError;
use llmux_protocol::canonical::{ResponseBuilder, StreamEvent};
use tokio::sync::oneshot;

use super::attempt::{self, Failure};
use super::pipe::{PipeBody, PipeSender, pipe};
use super::{Head, Job, accounting};
use crate::catalog::Model;
use crate::inbound::StreamWriter;
use crate::providers::{EventDecoder, SseReader, UpstreamError, UpstreamErrorKind};
use crate::router::Candidate;

/// Where the client connection stands.
struct Client {
    head: Option<oneshot::Sender<Head>>,
    body: Option<PipeBody>,
    /// `None` once the client is given up on.
    tx: Option<PipeSender>,
    /// How long a send may wait for the client to take what is pending.
    send_timeout: Duration,
}

impl Client {
    /// Hand the response head to the HTTP handler (once): from now on bytes flow to the client.
    fn commit(&mut self) {
        if let (Some(h), Some(body)) = (self.head.take(), self.body.take()) {
            let _ = h.send(Head::Stream(body));
        }
    }

    fn committed(&self) -> bool {
        self.head.is_none()
    }

    /// Resolves when the client is gone.
    async fn gone(&mut self) {
        match (self.head.as_mut(), &self.tx) {
            (Some(h), _) => h.closed().await,
            (None, Some(tx)) => tx.closed().await,
            (None, None) => {}
        }
    }

    /// Send bytes; false if the client is gone, or took none of what was pending for the
    /// send timeout (a client that stops reading would otherwise hold the upstream stream,
    /// and its reservation, for as long as it keeps the connection open).
    async fn send(&mut self, b: Vec<u8>) -> bool {
        let first = !self.committed();
        self.commit();
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        let sent = b.is_empty()
            || match tokio::time::timeout(self.send_timeout, tx.send(b)).await {
                Ok(sent) => sent,
                Err(_) => {
                    tracing::debug!("a stream's client took nothing for {:?}", self.send_timeout);
                    if let Some(tx) = self.tx.take() {
                        tx.abort();
                    }
                    false
                }
            };
        if first {
            // Let the connection write the first token out now: when the upstream's events
            // arrive together, this task would otherwise relay (and meter) all of them first.
            tokio::task::yield_now().await;
        }
        sent
    }
}

/// An upstream stream that produced its first events.
struct Opened {
    reader: SseReader,
    decoder: Box<dyn EventDecoder>,
    first: Vec<StreamEvent>,
    done: bool,
}

async fn open(job: &Job, c: &Candidate) -> Result<Opened, Failure> {
    let e = &c.endpoint;
    let (adapter, req) = attempt::build(job, c, true)?;
    let upstream = |error| Failure::Upstream {
        provider: e.provider.name.clone(),
        error,
    };
    let resp = job
        .gw
        .upstream
        .send(&e.provider, adapter, req)
        .await
        .map_err(upstream)?;
    let mut reader = SseReader::new(resp);
    let mut decoder = adapter.stream_decoder();
    let mut first = Vec::new();
    loop {
        match reader.next(e.provider.timeout).await.map_err(upstream)? {
            Some(ev) => {
                let invalid = |err: ProtocolError| {
                    upstream(UpstreamError::new(
                        UpstreamErrorKind::InvalidResponse,
                        err.to_string(),
                    ))
                };
                let mut done = decoder.decode(&ev, &mut first).map_err(invalid)?;
                // Only up to the first token: rendering what follows would delay it.
                while !done
                    && !first.is_empty()
                    && first.iter().all(|e| matches!(e, StreamEvent::Start { .. }))
                    && let Some(ev) = reader.next_ready()
                {
                    done = decoder.decode(&ev, &mut first).map_err(invalid)?;
                }
                if let Some(StreamEvent::Error(err)) =
                    first.iter().find(|e| matches!(e, StreamEvent::Error(_)))
                {
                    return Err(upstream(UpstreamError::new(
                        UpstreamErrorKind::Status(502),
                        err.message.clone(),
                    )));
                }
                if done || !first.is_empty() {
                    return Ok(Opened {
                        reader,
                        decoder,
                        first,
                        done,
                    });
                }
            }
            None => {
                decoder.finish(&mut first);
                if first.is_empty() {
                    return Err(upstream(UpstreamError::new(
                        UpstreamErrorKind::InvalidResponse,
                        "the upstream closed the stream without sending anything",
                    )));
                }
                return Ok(Opened {
                    reader,
                    decoder,
                    first,
                    done: true,
                });
            }
        }
    }
}

/// Decode the events already received after one just decoded (unless it ended the stream),
/// so that events arriving together reach the client in one write, not one each.
fn decode_ready(
    reader: &mut SseReader,
    decoder: &mut dyn EventDecoder,
    out: &mut Vec<StreamEvent>,
    mut done: bool,
) -> Result<bool, ProtocolError> {
    while !done && let Some(ev) = reader.next_ready() {
        done = decoder.decode(&ev, out)?;
    }
    Ok(done)
}

enum End {
    /// The upstream finished.
    Done,
    /// The upstream failed mid-stream.
    Failed(UpstreamError),
    /// The client left.
    Cancelled,
    /// llmux is shutting down ([`super::Gateway::shutdown`]).
    Shutdown,
}

pub(crate) async fn drive(mut job: Box<Job>, head: oneshot::Sender<Head>) {
    let (tx, body) = pipe();
    let mut client = Client {
        head: Some(head),
        body: Some(body),
        tx: Some(tx),
        send_timeout: job.gw.config.stream_send_timeout,
    };
    let keepalive = job.gw.config.stream_keepalive;
    let plan = std::mem::take(&mut job.plan.routes);
    let mut last: Option<Failure> = None;
    let mut streaming = None;
    'routes: for route in &plan {
        for c in &route.candidates {
            let e = &c.endpoint;
            let started = Instant::now();
            // Both phases boxed: a future is as large as its largest state for as long as it
            // lives, and inline, the opening's (the upstream call, the keep-alive timer) made
            // every stream's task 6.8 KB while it streamed; the relay alone is 1.5 KB.
            let opened = Box::pin(open_keeping_alive(&job, c, &mut client, keepalive)).await;
            let Some(opened) = opened else {
                attempt::note(&mut job.rec, e, started, None);
                return cancelled_before_content(job);
            };
            match opened {
                Ok(o) => {
                    attempt::note(&mut job.rec, e, started, None);
                    // Boxed: this variable is part of the task's state while it waits for
                    // the opening, as large as an `Opened` inline.
                    streaming = Some((route.model.clone(), c.clone(), Box::new(o)));
                    break 'routes;
                }
                Err(f) => {
                    attempt::note(&mut job.rec, e, started, Some(&f));
                    attempt::report(&job, &route.model, e, Some(&f), None, None);
                    let retry = f.retryable();
                    last = Some(f);
                    if !retry {
                        break 'routes;
                    }
                }
            }
        }
    }
    // The routes' lists are not kept while the stream lasts (about 600 bytes a stream).
    drop(plan);
    match streaming {
        Some((model, c, o)) => Box::pin(relay(job, client, &model, &c, *o)).await,
        // Boxed for the same reason as the phases above.
        None => Box::pin(all_failed(job, client, last)).await,
    }
}

/// Every attempt failed before any content: the error, as the response or (after keep-alive
/// comments committed the response) as the stream's last event.
async fn all_failed(mut job: Box<Job>, mut client: Client, last: Option<Failure>) {
    let err = attempt::final_error(last, &job.rec);
    job.rec.status = err.status.as_u16();
    job.rec.error = Some(err.message.clone());
    job.rec.latency_ms = Some(job.meta.received.elapsed().as_millis() as i64);
    // Rendered before the record is handed over: the last event carries the generation's id.
    let tail = client.committed().then(|| {
        let mut w =
            job.format
                .stream_writer(&job.rec.id, &job.req.model, "", job.meta.received_ms / 1000);
        let mut buf = Vec::new();
        let kind = err
            .metadata
            .as_ref()
            .and_then(|m| m["error_type"].as_str())
            .unwrap_or("provider_unavailable");
        w.error(err.status.as_u16(), &err.message, kind, &mut buf);
        buf
    });
    job.gw.meter.record(std::mem::take(&mut job.rec));
    match tail {
        Some(buf) => {
            client.send(buf).await;
        }
        None => {
            if let Some(h) = client.head.take() {
                let _ = h.send(Head::Error(err));
            }
        }
    }
}

/// Open a stream on `c`, sending keep-alive comments to the client while waiting for the
/// first token; `None` if the client left first.
async fn open_keeping_alive(
    job: &Job,
    c: &Candidate,
    client: &mut Client,
    keepalive: Duration,
) -> Option<Result<Opened, Failure>> {
    let e = &c.endpoint;
    let deadline = tokio::time::Instant::now() + e.provider.timeout;
    let opening = open(job, c);
    tokio::pin!(opening);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let shutdown = job.gw.shutdown.token().cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = tokio::time::timeout_at(deadline, &mut opening) => {
                return Some(r.unwrap_or_else(|_| Err(Failure::Upstream {
                    provider: e.provider.name.clone(),
                    error: UpstreamError::new(
                        UpstreamErrorKind::Timeout,
                        format!("no first token within {}s", e.provider.timeout.as_secs()),
                    ),
                })));
            }
            _ = ticks.tick() => {
                if !client.send(job.format.keepalive().to_vec()).await {
                    return None;
                }
            }
            _ = client.gone() => return None,
            _ = &mut shutdown => return Some(Err(Failure::Shutdown)),
        }
    }
}

fn cancelled_before_content(mut job: Box<Job>) {
    job.rec.cancelled = true;
    job.rec.status = 499;
    job.rec.error = Some("client disconnected".into());
    job.rec.latency_ms = Some(job.meta.received.elapsed().as_millis() as i64);
    job.gw.meter.record(std::mem::take(&mut job.rec));
}

async fn relay(mut job: Box<Job>, mut client: Client, model: &Model, c: &Candidate, o: Opened) {
    let e = &c.endpoint;
    let Opened {
        mut reader,
        mut decoder,
        first,
        mut done,
    } = o;
    let created = job.meta.received_ms / 1000;
    let mut writer: Box<dyn StreamWriter> =
        job.format
            .stream_writer(&job.rec.id, &model.id, &e.provider.name, created);
    let mut built = ResponseBuilder::new();
    let first_token_at = Instant::now();
    job.rec.ttft_ms = Some(job.meta.received.elapsed().as_millis() as i64);

    let mut buf = Vec::new();
    // Room for as much as the last batch took: events that arrive together (a fast upstream
    // sends many per read) are written into one buffer, which would otherwise grow from
    // nothing, copied at every doubling. Reserved only when there is something to write, so
    // that a slow stream holds no buffer while it waits.
    let mut batch_bytes = 1024;
    let mut events = first;
    let mut end = End::Done;
    // Made once: waiting on the token registers with it, which the loop would repeat at
    // every event. (Borrowed through its own handle on the gateway: `job` is changed below.)
    let gw = job.gw.clone();
    let shutdown = gw.shutdown.token().cancelled();
    tokio::pin!(shutdown);
    loop {
        let mut upstream_error = None;
        if !events.is_empty() {
            buf.reserve(batch_bytes);
        }
        for ev in events.drain(..) {
            if let StreamEvent::Error(err) = &ev {
                upstream_error = Some(UpstreamError::new(
                    UpstreamErrorKind::Status(502),
                    err.message.clone(),
                ));
                break;
            }
            built.push(&ev);
            writer.event(&ev, &mut buf);
        }
        batch_bytes = buf.len().max(1024);
        if !client.send(std::mem::take(&mut buf)).await {
            end = End::Cancelled;
            break;
        }
        if let Some(err) = upstream_error {
            end = End::Failed(err);
            break;
        }
        if done {
            break;
        }
        // In this order: an event already there is taken without polling the others (a
        // client gone is also seen by the next send; a shutdown at the stream's next pause,
        // and a model's stream pauses between tokens).
        let next = tokio::select! {
            biased;
            r = reader.next(e.provider.idle_timeout) => r,
            _ = client.gone() => { end = End::Cancelled; break; }
            _ = &mut shutdown => { end = End::Shutdown; break; }
        };
        match next {
            Ok(Some(sse)) => match decoder
                .decode(&sse, &mut events)
                .and_then(|d| decode_ready(&mut reader, decoder.as_mut(), &mut events, d))
            {
                Ok(d) => done = d,
                Err(err) => {
                    end = End::Failed(UpstreamError::new(
                        UpstreamErrorKind::InvalidResponse,
                        err.to_string(),
                    ));
                    break;
                }
            },
            Ok(None) => {
                decoder.finish(&mut events);
                done = true;
            }
            Err(err) => {
                end = End::Failed(err);
                break;
            }
        }
    }
    drop(reader);

    let (usage, estimated) = accounting::final_usage(&job.req, &built);
    let finish = built.finish().cloned();
    let reservation = job.reservation.take().expect("reserved");
    let charged = attempt::settle_served(
        &mut job,
        model,
        c,
        usage.clone(),
        estimated,
        finish.as_ref(),
        built.upstream_id().map(str::to_string),
        reservation,
    );
    let finished = Instant::now();
    job.rec.status = 200;
    job.rec.generation_ms = Some(finished.duration_since(first_token_at).as_millis() as i64);
    job.rec.latency_ms = Some(job.meta.received.elapsed().as_millis() as i64);
    let mut tail = Vec::new();
    match &end {
        End::Done => {
            let gen_secs = finished.duration_since(first_token_at).as_secs_f64();
            let tps = (usage.completion_tokens > 1 && gen_secs > 0.0)
                .then(|| usage.completion_tokens as f64 / gen_secs);
            let ttft = job.rec.ttft_ms.map(|t| t as f64);
            attempt::report(&job, model, e, None, ttft, tps);
            job.gw.router.served(&job.plan, model, e);
            let metadata = attempt::metadata(&job);
            writer.finish(
                finish.as_ref(),
                &usage,
                charged,
                c.byok.is_some(),
                metadata.as_ref(),
                &mut tail,
            )
        }
        End::Failed(err) => {
            let failure = Failure::Upstream {
                provider: e.provider.name.clone(),
                error: err.clone(),
            };
            attempt::report(&job, model, e, Some(&failure), None, None);
            job.rec.error = Some(err.message.clone());
            job.rec.status = err.client_status();
            writer.error(
                err.client_status(),
                &format!("{}: {}", e.provider.name, err.message),
                err.error_type(),
                &mut tail,
            );
        }
        End::Cancelled => {
            job.rec.cancelled = true;
            job.rec.error = Some("client disconnected".into());
        }
        End::Shutdown => {
            job.rec.error = Some(attempt::SHUTTING_DOWN.into());
            job.rec.status = 503;
            writer.error(
                503,
                attempt::SHUTTING_DOWN,
                "service_unavailable",
                &mut tail,
            );
        }
    }
    // Recorded before the last bytes leave, so `GET /generation` right after the stream finds it.
    job.gw.meter.record(std::mem::take(&mut job.rec));
    if !matches!(end, End::Cancelled) {
        client.send(tail).await;
    }
}
