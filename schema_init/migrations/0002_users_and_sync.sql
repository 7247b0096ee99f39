-- Accounts, Discogs links, app configuration and sync history (reference/api.md §3.4, with the
-- design §6 decisions: is_admin, encrypted secrets, one active sync per user in the database).

CREATE TABLE IF NOT EXISTS users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email           varchar(255) NOT NULL,
    hashed_password varchar(255) NOT NULL,
    is_active       boolean NOT NULL DEFAULT true,
    is_admin        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON users (lower(email));

-- access_token / access_secret hold ciphertext (common.crypto), never plaintext.
CREATE TABLE IF NOT EXISTS oauth_tokens (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider          varchar(50) NOT NULL,
    access_token      text NOT NULL,
    access_secret     text NOT NULL,
    provider_username varchar(255),
    provider_user_id  varchar(255),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, provider)
);

-- Secret values (the consumer secret) are stored as ciphertext; `is_secret` says which.
CREATE TABLE IF NOT EXISTS app_config (
    key        varchar(255) PRIMARY KEY,
    value      text NOT NULL,
    is_secret  boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sync_history (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sync_type        varchar(50) NOT NULL DEFAULT 'full',
    status           varchar(20) NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    collection_count integer,
    wantlist_count   integer,
    items_synced     integer,
    pages_fetched    integer,
    error_message    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    heartbeat_at     timestamptz,
    completed_at     timestamptz
);
CREATE INDEX IF NOT EXISTS sync_history_user_idx ON sync_history (user_id, created_at DESC);
-- At most one queued or running sync per user, whatever the number of api replicas.
CREATE UNIQUE INDEX IF NOT EXISTS sync_history_one_active_per_user
    ON sync_history (user_id) WHERE status IN ('queued', 'running');

CREATE TABLE IF NOT EXISTS user_collections (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    release_id  bigint NOT NULL,
    instance_id bigint NOT NULL,
    folder_id   integer,
    title       varchar(500),
    artist      varchar(500),
    year        integer,
    format      varchar(255),
    label       varchar(255),
    rating      smallint NOT NULL DEFAULT 0,
    date_added  timestamptz,
    metadata    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, instance_id)
);
CREATE INDEX IF NOT EXISTS user_collections_user_idx ON user_collections (user_id);
CREATE INDEX IF NOT EXISTS user_collections_release_idx ON user_collections (release_id);

CREATE TABLE IF NOT EXISTS user_wantlists (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    release_id bigint NOT NULL,
    title      varchar(500),
    artist     varchar(500),
    year       integer,
    format     varchar(255),
    rating     smallint NOT NULL DEFAULT 0,
    notes      text,
    date_added timestamptz,
    metadata   jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, release_id)
);
CREATE INDEX IF NOT EXISTS user_wantlists_user_idx ON user_wantlists (user_id);
CREATE INDEX IF NOT EXISTS user_wantlists_release_idx ON user_wantlists (release_id);
