-- Rollups: generation records summed into time buckets, maintained in the same transaction
-- as the records they count (so they always equal a recount), and rebuildable from them.
-- `period` is hour, day, week (from Monday, UTC) or month; `start` is the bucket's first
-- millisecond (Unix ms, UTC). Rankings and activity read these, never the raw records.

-- By model and provider: rankings by model, author, origin and provider. `model` is the
-- served catalog id, with a `:free` suffix when the free variant was asked for. `public` is 0
-- for accounts kept out of public rankings.
CREATE TABLE rollup_models (
    period             TEXT NOT NULL,
    start              BIGINT NOT NULL,
    model              TEXT NOT NULL,
    provider           TEXT NOT NULL,
    public             BIGINT NOT NULL,
    requests           BIGINT NOT NULL,
    tokens_prompt      BIGINT NOT NULL,
    tokens_completion  BIGINT NOT NULL,
    tokens_reasoning   BIGINT NOT NULL,
    tokens_cached      BIGINT NOT NULL,
    cost               BIGINT NOT NULL,
    PRIMARY KEY (period, start, model, provider, public)
);

-- By app (HTTP-Referer, else X-Title) and model: app rankings and a model's top apps.
CREATE TABLE rollup_apps (
    period             TEXT NOT NULL,
    start              BIGINT NOT NULL,
    app                TEXT NOT NULL,
    model              TEXT NOT NULL,
    public             BIGINT NOT NULL,
    requests           BIGINT NOT NULL,
    tokens_prompt      BIGINT NOT NULL,
    tokens_completion  BIGINT NOT NULL,
    tokens_reasoning   BIGINT NOT NULL,
    tokens_cached      BIGINT NOT NULL,
    cost               BIGINT NOT NULL,
    PRIMARY KEY (period, start, app, model, public)
);
CREATE INDEX rollup_apps_model ON rollup_apps(model, period, start);

-- Apps as last seen: their display title (X-Title) and first and last use.
CREATE TABLE apps (
    app         TEXT PRIMARY KEY,
    title       TEXT,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);

-- By account, key, model and provider (hour and day): activity.
CREATE TABLE rollup_accounts (
    period             TEXT NOT NULL,
    start              BIGINT NOT NULL,
    account_id         TEXT NOT NULL,
    key_hash           TEXT NOT NULL,
    model              TEXT NOT NULL,
    provider           TEXT NOT NULL,
    requests           BIGINT NOT NULL,
    tokens_prompt      BIGINT NOT NULL,
    tokens_completion  BIGINT NOT NULL,
    tokens_reasoning   BIGINT NOT NULL,
    tokens_cached      BIGINT NOT NULL,
    cost               BIGINT NOT NULL,
    byok_usage         BIGINT NOT NULL,
    PRIMARY KEY (account_id, period, start, key_hash, model, provider)
);

-- Market data imported from OpenRouter's public rankings dataset, one named source each,
-- kept apart from llmux's own traffic. `model` is the catalog id the permaslug maps to (or
-- the permaslug without its date suffix when the catalog does not know it).
CREATE TABLE market_daily (
    source     TEXT NOT NULL,
    day        BIGINT NOT NULL,
    permaslug  TEXT NOT NULL,
    model      TEXT NOT NULL,
    tokens     BIGINT NOT NULL,
    PRIMARY KEY (source, day, permaslug)
);
