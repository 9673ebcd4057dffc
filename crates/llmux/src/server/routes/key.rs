//! `GET /key` (alias `/auth/key`): the presented key's limits and usage.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{Datelike, TimeZone, Utc};
use serde_json::{Value, json};

use crate::money::Money;
use crate::pipeline::Gateway;
use crate::server::auth;
use crate::server::error::ApiError;
use crate::storage::KeyRow;

/// Start (Unix ms) of the current day, week (from Monday) and month, UTC.
pub fn period_starts(now_ms: i64) -> (i64, i64, i64) {
    let now = Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_default();
    let day = now.date_naive();
    let ms = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_millis()
    };
    let week = day - chrono::Duration::days(day.weekday().num_days_from_monday() as i64);
    let month = day.with_day(1).expect("first of month");
    (ms(day), ms(week), ms(month))
}

/// Usage of a key: all time, today, this week, this month.
pub async fn key_usage(gw: &Gateway, key: &KeyRow) -> anyhow::Result<[Money; 4]> {
    let (d, w, m) = period_starts(crate::clock::now_ms());
    Ok([
        gw.store.key_spend_since(&key.hash, i64::MIN).await?,
        gw.store.key_spend_since(&key.hash, d).await?,
        gw.store.key_spend_since(&key.hash, w).await?,
        gw.store.key_spend_since(&key.hash, m).await?,
    ])
}

pub async fn current(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let ctx = auth::any_key(&gw, &headers).await?;
    gw.meter.flush().await;
    let k = &ctx.key;
    let [total, daily, weekly, monthly] = key_usage(&gw, k).await?;
    let window_usage = match k.limit_reset.as_deref() {
        Some("daily") => daily,
        Some("weekly") => weekly,
        Some("monthly") => monthly,
        _ => total,
    };
    let limit_remaining = k
        .limit
        .map(|l| l.saturating_sub(window_usage).max(Money::ZERO));
    let balance = ctx.account.balance();
    Ok(Json(json!({"data": {
        "label": k.label,
        "name": k.name,
        "hash": k.hash,
        "limit": k.limit.map(Money::to_f64),
        "limit_remaining": limit_remaining.map(Money::to_f64),
        "limit_reset": k.limit_reset,
        "include_byok_in_limit": k.include_byok_in_limit,
        "usage": total.to_f64(),
        "usage_daily": daily.to_f64(),
        "usage_weekly": weekly.to_f64(),
        "usage_monthly": monthly.to_f64(),
        "byok_usage": 0.0,
        "byok_usage_daily": 0.0,
        "byok_usage_weekly": 0.0,
        "byok_usage_monthly": 0.0,
        "is_free_tier": false,
        "is_management_key": k.management,
        "is_provisioning_key": k.management,
        "expires_at": k.expires_at.map(crate::clock::iso8601),
        "rate_limit": {"requests": k.rpm.unwrap_or(-1), "interval": "1m", "note": "requests per minute; -1: no limit"},
        "allowed_data_regions": [],
        "budgets": [],
        "effective_budget": null,
        "creator_user_id": null,
        "organization_id": null,
        "workspace_id": null,
        "free_model_daily_requests": {"limit": 0, "remaining": 0, "used": 0},
        "account": {
            "id": ctx.account.id,
            "prepaid": ctx.account.prepaid(),
            "balance": balance.to_string(),
        },
    }})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_at_midnight_utc_weeks_on_monday() {
        // Wednesday 2026-02-11 15:30 UTC
        let now = Utc
            .with_ymd_and_hms(2026, 2, 11, 15, 30, 0)
            .unwrap()
            .timestamp_millis();
        let (d, w, m) = period_starts(now);
        assert_eq!(
            d,
            Utc.with_ymd_and_hms(2026, 2, 11, 0, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(
            w,
            Utc.with_ymd_and_hms(2026, 2, 9, 0, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(
            m,
            Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
    }
}
