"""The SQLite manifest's schema, versioned with ``PRAGMA user_version``: one entry per version."""

SCHEMA_VERSION = 4

migrations: dict[int, str] = {
    1: """
    CREATE TABLE items (
        key TEXT PRIMARY KEY,
        image_path TEXT, mask_path TEXT,
        image_size INTEGER, image_mtime_ns INTEGER, image_hash TEXT,
        mask_size INTEGER, mask_mtime_ns INTEGER, mask_hash TEXT,
        settings_hash TEXT, content_key TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        sends INTEGER NOT NULL DEFAULT 0,
        possibly_charged INTEGER NOT NULL DEFAULT 0,
        error_status INTEGER, error TEXT, fixes TEXT, warnings TEXT,
        output_path TEXT, output_hash TEXT, output_size INTEGER,
        credits TEXT, remaining_credits TEXT,
        first_seen REAL, started_at REAL, finished_at REAL, seconds REAL, run_id INTEGER
    );
    CREATE INDEX items_status ON items(status);
    CREATE INDEX items_content ON items(content_key, settings_hash);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL, ended_at REAL, pid INTEGER,
        settings TEXT, counts TEXT, credits_used TEXT, remaining_credits TEXT,
        requests INTEGER, possibly_charged_twice INTEGER, exit_code INTEGER
    );
    """,
    2: """
    ALTER TABLE items ADD COLUMN failed_runs INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE items ADD COLUMN request_hash TEXT;
    ALTER TABLE items ADD COLUMN answer TEXT;
    CREATE INDEX items_request ON items(request_hash);
    """,
    # The inputs' hash algorithm is the manifest's own: one made before XXH128 keeps SHA-256, so
    # nothing recorded in it looks new. A new manifest is set to XXH128 once made (SqliteStore).
    3: """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (name, value) VALUES ('content_hash', 'sha256');
    """,
    # The report (issue 16): why a result is worth a second look; a run's retries and 429s.
    4: """
    ALTER TABLE items ADD COLUMN flags TEXT;
    ALTER TABLE runs ADD COLUMN retries INTEGER;
    ALTER TABLE runs ADD COLUMN rate_limited INTEGER;
    """,
}
