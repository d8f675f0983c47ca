-- Schema version 2: a `settings` table the views read (v_drift's minimum cell count) and the
-- `cut_rule` column of `cutpoints` ('>=' or '>'; the 0.1.0 column `comparison` stays and is read
-- where cut_rule is NULL). Nothing is rewritten or rescored.
CREATE TABLE IF NOT EXISTS settings (
    name                       VARCHAR PRIMARY KEY,
    value                      VARCHAR NOT NULL,
    description                VARCHAR,
    updated_at                 TIMESTAMP
);
INSERT OR IGNORE INTO settings (name, value, description, updated_at) VALUES
    ('drift_min_count', '30', 'v_drift flags a cell only when it holds at least this many images',
     current_timestamp);
ALTER TABLE cutpoints ADD COLUMN IF NOT EXISTS cut_rule VARCHAR;
