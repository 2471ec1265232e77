-- After the frozen 1.1.1 suite: the extension is still at version 1.1.1 (the
-- suite ran against 1.1.1's SQL objects from its first file to its last).
SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia';
