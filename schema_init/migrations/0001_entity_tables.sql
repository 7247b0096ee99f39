-- One table per dump type: the Discogs id as bigint key, the content hash, the full normalised
-- record as JSONB, typed columns for what people filter on, and a generated tsvector (GIN) for
-- full-text search. `dump_version` is the dump the row was last seen in (stale rows are swept).

CREATE TABLE IF NOT EXISTS artists (
    id           bigint PRIMARY KEY,
    sha256       text NOT NULL,
    dump_version text NOT NULL,
    name         text,
    data         jsonb NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
                   to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(data->>'realname', ''))) STORED,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS artists_name_idx ON artists (name);
CREATE INDEX IF NOT EXISTS artists_search_idx ON artists USING gin (search);
CREATE INDEX IF NOT EXISTS artists_dump_version_idx ON artists (dump_version);

CREATE TABLE IF NOT EXISTS labels (
    id           bigint PRIMARY KEY,
    sha256       text NOT NULL,
    dump_version text NOT NULL,
    name         text,
    data         jsonb NOT NULL,
    search       tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(name, ''))) STORED,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS labels_name_idx ON labels (name);
CREATE INDEX IF NOT EXISTS labels_search_idx ON labels USING gin (search);
CREATE INDEX IF NOT EXISTS labels_dump_version_idx ON labels (dump_version);

CREATE TABLE IF NOT EXISTS masters (
    id           bigint PRIMARY KEY,
    sha256       text NOT NULL,
    dump_version text NOT NULL,
    title        text,
    year         integer,
    data         jsonb NOT NULL,
    search       tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(title, ''))) STORED,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS masters_title_idx ON masters (title);
CREATE INDEX IF NOT EXISTS masters_year_idx ON masters (year);
CREATE INDEX IF NOT EXISTS masters_search_idx ON masters USING gin (search);
CREATE INDEX IF NOT EXISTS masters_dump_version_idx ON masters (dump_version);

CREATE TABLE IF NOT EXISTS releases (
    id           bigint PRIMARY KEY,
    sha256       text NOT NULL,
    dump_version text NOT NULL,
    title        text,
    year         integer,
    country      text,
    master_id    bigint,
    data         jsonb NOT NULL,
    search       tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(title, ''))) STORED,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS releases_title_idx ON releases (title);
CREATE INDEX IF NOT EXISTS releases_year_idx ON releases (year);
CREATE INDEX IF NOT EXISTS releases_country_idx ON releases (country);
CREATE INDEX IF NOT EXISTS releases_master_id_idx ON releases (master_id);
CREATE INDEX IF NOT EXISTS releases_search_idx ON releases USING gin (search);
CREATE INDEX IF NOT EXISTS releases_dump_version_idx ON releases (dump_version);
