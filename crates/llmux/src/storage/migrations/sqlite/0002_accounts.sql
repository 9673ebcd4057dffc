-- Keys are soft-deleted so history keeps its references and caches can see the deletion.
ALTER TABLE api_keys ADD COLUMN deleted_at INTEGER;

-- Accounts' own provider keys (BYOK), encrypted with the server's secrets key.
CREATE TABLE byok_keys (
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    provider    TEXT NOT NULL,
    -- base64 of nonce || AES-256-GCM ciphertext
    sealed      TEXT NOT NULL,
    -- prioritized: tried before the shared endpoints; fallback: after them
    mode        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER,
    PRIMARY KEY (account_id, provider)
);
CREATE INDEX byok_keys_updated ON byok_keys(updated_at);

-- What a BYOK request would have cost at the endpoint's price (the provider bills the account
-- directly; llmux charges only its fee, in `cost`).
ALTER TABLE generations ADD COLUMN byok_usage INTEGER NOT NULL DEFAULT 0;
