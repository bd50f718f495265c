-- The coordination list of possible duplicates, newest first, read by keyset
-- (registered_at, case_id): only the flagged cases are indexed.
CREATE INDEX cases_possible_duplicates ON cases (registered_at DESC, case_id DESC)
    WHERE possible_duplicate_of <> '{}';
