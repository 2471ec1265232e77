-- Nothing live or dangerous in rendered subjects.  A media title or an
-- inviter's name holding CR/LF (the directory is the application's) cannot
-- reach outbox.subject as a line break: every run of control characters
-- becomes one space, and a CHECK on the outbox holds it for any writer.  A
-- template cannot put {URL} in a subject, which is kept after the body (and
-- its live link) is scrubbed.
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;
INSERT INTO invitetomedia.email_templates VALUES
    ('t', '{INVITER_NAME} invites you to {MEDIA_TITLE}', 'Open {URL}');
UPDATE invitetomedia.settings SET invite_email_template = 't';

UPDATE invitetomedia.media SET title = E'Launch\r\nBcc: victim@example.com\r\n\r\nbody' WHERE media_id = 'live';
UPDATE invitetomedia.users SET first_name = E'Olivia\n\t', last_name = E'\u0085Owner\u2028' WHERE user_id = 'owner';
SELECT count(*) FROM invitetomedia.invite_create('live', 'owner', 'guest@outside.example', 'Gina', 'Guest', 'viewer', true);
SELECT subject, subject ~ '[\x01-\x1f\x7f-\x9f\u2028\u2029]' AS has_control FROM invitetomedia.outbox;
-- the body keeps the link
SELECT body LIKE 'Open http://localhost/invitetomedia/itm\_%' AS body_has_link FROM invitetomedia.outbox;

-- the outbox refuses a control character in a subject from any writer
-- (the first line only: the failing row holds a token and times)
SELECT split_part(pg_temp.try($$UPDATE invitetomedia.outbox SET subject = E'a\r\nb'$$), E'\n', 1) AS refused;
SELECT split_part(pg_temp.try($$UPDATE invitetomedia.outbox SET subject = E'a\u0085b'$$), E'\n', 1) AS refused;

-- {URL} is refused in a subject, in any template
SELECT pg_temp.try($$INSERT INTO invitetomedia.email_templates VALUES ('u', 'Your link: {URL}', 'Open {URL}')$$);
SELECT pg_temp.try($$UPDATE invitetomedia.email_templates SET subject = 'Join {URL} now'$$);
-- other placeholders are fine there
UPDATE invitetomedia.email_templates SET subject = '{FIRST_NAME}, join {MEDIA_TITLE} ({ROLE})';
SELECT count(*) FROM invitetomedia.invite_create('live', 'owner', 'other@outside.example', 'Otto', 'Other', 'speaker', true);
SELECT subject FROM invitetomedia.outbox WHERE to_email = 'other@outside.example';
