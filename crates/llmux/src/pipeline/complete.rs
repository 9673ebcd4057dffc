//! Non-streamed requests: try endpoints in order until one answers, then render the whole
//! answer.
//!
//! This runs in the request's own future, not in a task of its own as a stream does: a
//! client that leaves drops it, and [`Unfinished`] records the request as cancelled then.
//! (A task and the channel back to the handler took 1,100 instructions a request.)

use std::time::Instant;

use llmux_protocol::canonical::ResponseBuilder;

use super::attempt::{self, Failure, Unfinished};
use super::{Head, Job, accounting};
use crate::inbound::Served;
use crate::providers::{Upstream, UpstreamError, UpstreamErrorKind};

pub(crate) async fn answer(job: Box<Job>) -> Head {
    let mut run = Unfinished::new(job);
    let plan = std::mem::take(&mut run.job.plan.routes);
    let mut reservation = run.job.reservation.take();
    let mut last: Option<Failure> = None;
    'routes: for route in &plan {
        for c in &route.candidates {
            let e = &c.endpoint;
            let started = Instant::now();
            let job = &mut run.job;
            let (adapter, upstream_req) = match attempt::build(job, c, false) {
                Ok(x) => x,
                Err(f) => {
                    attempt::note(&mut job.rec, e, started, Some(&f));
                    attempt::report(job, &route.model, e, Some(&f), None, None);
                    last = Some(f);
                    continue;
                }
            };
            let gw = job.gw.clone();
            let call = async {
                let resp = gw.upstream.send(&e.provider, adapter, upstream_req).await?;
                let body = Upstream::read_body(resp).await?;
                adapter.decode_response(&body).map_err(|err| {
                    UpstreamError::new(UpstreamErrorKind::InvalidResponse, err.to_string())
                })
            };
            // Pinned where it is: moved into the timeout, its 1.8 KB were copied.
            tokio::pin!(call);
            let outcome = run.call(e, started, &mut call).await;
            let job = &mut run.job;
            match outcome {
                Ok(events) => {
                    attempt::note(&mut job.rec, e, started, None);
                    let mut built = ResponseBuilder::new();
                    for ev in &events {
                        built.push(ev);
                    }
                    let (usage, estimated) = accounting::final_usage(&job.req, &built);
                    let resp = built.finish_response();
                    let charged = attempt::settle_served(
                        job,
                        &route.model,
                        c,
                        usage.clone(),
                        estimated,
                        resp.finish.as_ref(),
                        resp.upstream_id.clone(),
                        reservation.take().expect("one success"),
                    );
                    job.rec.status = 200;
                    job.rec.latency_ms = Some(job.meta.received.elapsed().as_millis() as i64);
                    // Whole-response time includes the wait for the first token, so a
                    // one-token reply says nothing about generation speed (as in streams).
                    let secs = started.elapsed().as_secs_f64();
                    let tps = (usage.completion_tokens > 1 && secs > 0.0)
                        .then(|| usage.completion_tokens as f64 / secs);
                    attempt::report(job, &route.model, e, None, None, tps);
                    job.gw.router.served(&job.plan, &route.model, e);
                    let metadata = attempt::metadata(job);
                    let created = job.meta.received_ms / 1000;
                    let body = job.format.render_complete(
                        &events,
                        &resp,
                        &Served {
                            id: &job.rec.id,
                            model: &route.model.id,
                            provider_name: &e.provider.name,
                            created,
                            usage: &usage,
                            cost: charged,
                            is_byok: c.byok.is_some(),
                            metadata: metadata.as_ref(),
                        },
                    );
                    // Recorded before the answer leaves, so `GET /generation` finds it.
                    run.record();
                    return Head::Complete(body);
                }
                Err(f) => {
                    attempt::note(&mut job.rec, e, started, Some(&f));
                    attempt::report(job, &route.model, e, Some(&f), None, None);
                    let retry = f.retryable();
                    last = Some(f);
                    if !retry {
                        break 'routes;
                    }
                }
            }
        }
    }
    let err = attempt::final_error(last, &run.job.rec);
    run.fail(&err);
    drop(reservation);
    Head::Error(err)
}
