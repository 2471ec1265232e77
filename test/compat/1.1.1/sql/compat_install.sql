-- The frozen 1.1.1 suite runs on the extension created at version 1.1.1, with
-- the library that is installed now (test/compat/run.sh).
CREATE EXTENSION invitetomedia VERSION '1.1.1';
SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia';
