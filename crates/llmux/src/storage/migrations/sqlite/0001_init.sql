-- Accounts own credit balances and keys. Money is integer picodollars (10^-12 USD).
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- 1: the balance is enforced (requests need credits); 0: usage is only recorded.
    prepaid     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

-- API keys, stored as the SHA-256 of the key; the key itself is shown once.
CREATE TABLE api_keys (
    hash                  TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    name                  TEXT NOT NULL,
    label                 TEXT NOT NULL,
    management            INTEGER NOT NULL DEFAULT 0,
    disabled              INTEGER NOT NULL DEFAULT 0,
    credit_limit          INTEGER,
    limit_reset           TEXT,
    include_byok_in_limit INTEGER NOT NULL DEFAULT 0,
    expires_at            INTEGER,
    rpm                   INTEGER,
    tpm                   INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX api_keys_account ON api_keys(account_id);
CREATE INDEX api_keys_updated ON api_keys(updated_at);

-- Every credit movement, append-only. A balance is the sum of its account's entries.
-- A generation is charged at most once (generation_id is unique).
CREATE TABLE ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    key_hash       TEXT,
    kind           TEXT NOT NULL,
    amount         INTEGER NOT NULL,
    generation_id  TEXT UNIQUE,
    note           TEXT,
    node           TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX ledger_account ON ledger(account_id);
CREATE INDEX ledger_key_time ON ledger(key_hash, created_at);

-- One record per inference request, success or failure.
CREATE TABLE generations (
    id                    TEXT PRIMARY KEY,
    created_at            INTEGER NOT NULL,
    account_id            TEXT,
    key_hash              TEXT,
    api_type              TEXT NOT NULL,
    requested_model       TEXT NOT NULL,
    model                 TEXT,
    provider              TEXT,
    provider_name         TEXT,
    upstream_model        TEXT,
    upstream_id           TEXT,
    streamed              INTEGER NOT NULL,
    cancelled             INTEGER NOT NULL,
    finish_reason         TEXT,
    native_finish_reason  TEXT,
    tokens_prompt         INTEGER NOT NULL,
    tokens_completion     INTEGER NOT NULL,
    tokens_reasoning      INTEGER NOT NULL,
    tokens_cached         INTEGER NOT NULL,
    tokens_cache_write    INTEGER NOT NULL,
    usage_estimated       INTEGER NOT NULL,
    cost                  INTEGER NOT NULL,
    upstream_cost         TEXT,
    latency_ms            INTEGER,
    ttft_ms               INTEGER,
    generation_ms         INTEGER,
    status                INTEGER NOT NULL,
    error                 TEXT,
    app_referer           TEXT,
    app_title             TEXT,
    external_user         TEXT,
    session_id            TEXT,
    user_agent            TEXT,
    is_byok               INTEGER NOT NULL,
    provider_responses    TEXT
);
CREATE INDEX generations_key_time ON generations(key_hash, created_at);
CREATE INDEX generations_time ON generations(created_at);
