-- The dashboard's access control: users, login sessions, API tokens and the audit log (leader/web/auth.py).
-- Secrets are never stored: passwords as argon2 hashes, session and API tokens as their SHA-256.

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    username    TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    client      TEXT
);
CREATE INDEX sessions_by_user ON sessions (username);

CREATE TABLE api_tokens (
    name         TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT
);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    username  TEXT,
    role      TEXT,
    method    TEXT NOT NULL,
    path      TEXT NOT NULL,
    action    TEXT NOT NULL,
    units     TEXT NOT NULL DEFAULT '[]',
    details   TEXT NOT NULL DEFAULT '{}',
    outcome   TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
    error     TEXT,
    client    TEXT
);
