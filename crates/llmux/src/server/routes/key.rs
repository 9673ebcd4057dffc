//! `GET /key` (alias `/auth/key`): the presented key's limits and usage; and the usage
//! figures every key view shares.

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

/// A key's usage (credits charged) and BYOK usage, overall, today, this week, this month.
pub struct KeyUsageReport {
    pub usage: [Money; 4],
    pub byok: [Money; 4],
}

impl KeyUsageReport {
    pub async fn load(gw: &Gateway, key: &KeyRow) -> anyhow::Result<Self> {
        let (d, w, m) = period_starts(crate::clock::now_ms());
        let mut usage = [Money::ZERO; 4];
        let mut byok = [Money::ZERO; 4];
        for (i, since) in [i64::MIN, d, w, m].into_iter().enumerate() {
            let (u, b) = gw.store.key_usage_since(&key.hash, since).await?;
            usage[i] = u;
            byok[i] = b;
        }
        Ok(Self { usage, byok })
    }

    /// What remains of the key's limit in its current window.
    pub fn limit_remaining(&self, key: &KeyRow) -> Option<Money> {
        let i = match key.limit_reset.as_deref() {
            Some("daily") => 1,
            Some("weekly") => 2,
            Some("monthly") => 3,
            _ => 0,
        };
        let spent = if key.include_byok_in_limit {
            self.usage[i].saturating_add(self.byok[i])
        } else {
            self.usage[i]
        };
        key.limit.map(|l| l.saturating_sub(spent).max(Money::ZERO))
    }

    /// The usage fields OpenRouter's key objects carry.
    pub fn fields(&self, v: &mut Value) {
        let names = ["usage", "usage_daily", "usage_weekly", "usage_monthly"];
        for (i, n) in names.iter().enumerate() {
            v[*n] = self.usage[i].to_f64().into();
            v[format!("byok_{n}")] = self.byok[i].to_f64().into();
        }
    }
}

pub async fn current(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let ctx = auth::any_key(&gw, &headers).await?;
    gw.meter.flush().await;
    let k = &ctx.key;
    let report = KeyUsageReport::load(&gw, k).await?;
    let mut data = json!({
        "label": k.label,
        "name": k.name,
        "hash": k.hash,
        "limit": k.limit.map(Money::to_f64),
        "limit_remaining": report.limit_remaining(k).map(Money::to_f64),
        "limit_reset": k.limit_reset,
        "include_byok_in_limit": k.include_byok_in_limit,
        "is_free_tier": false,
        "is_management_key": k.management,
        "is_provisioning_key": k.management,
        "expires_at": k.expires_at.map(crate::clock::iso8601),
        "rate_limit": {
            "requests": k.rpm.unwrap_or(-1),
            "interval": "1m",
            "note": "requests per minute for this key; -1: no limit",
        },
        "tokens_per_minute": k.tpm,
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
            "balance": ctx.account.balance().to_string(),
        },
    });
    report.fields(&mut data);
    Ok(Json(json!({ "data": data })))
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
