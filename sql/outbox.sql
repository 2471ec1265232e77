-- the outbox API for the external sender: claim, sent, failed, queue views
\i sql/include/fixture.psql
INSERT INTO invitetomedia.email_templates VALUES ('invite', 'Invite to {MEDIA_TITLE}', 'Open {URL}');
UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 'invite',
       email_max_attempts = 3, email_retry_delay = '10 seconds';
SELECT count(*) FROM generate_series(1, 5) i,
       invitetomedia.invite_create('live', 'owner', 'm' || i || '@outside.example', 'M', i::text, 'viewer', true);
SELECT state, messages, oldest_age < interval '1 minute' AS fresh FROM invitetomedia.email_queue;
-- 2.0 draws message ids at random: messages queued by one statement are
-- equally old, and a claim's order among them is the ids'.  Make m1 the
-- oldest, then m2 and so on, so that "oldest first" shows.
UPDATE invitetomedia.outbox
   SET next_attempt_at = next_attempt_at - (6 - split_part(to_name, ' ', 2)::int) * interval '1 second';

-- a claim takes due messages, oldest first, and leases them
SELECT message_id IS NOT NULL AS has_id, to_email, to_name, subject, body LIKE 'Open http://localhost/invitetomedia/itm_%' AS has_link
  FROM invitetomedia.email_claim(2, '1 minute') ORDER BY to_email;
SELECT state, messages FROM invitetomedia.email_queue;
-- claimed messages are not handed out again while leased
SELECT to_email FROM invitetomedia.email_claim(10, '1 minute') ORDER BY to_email;
SELECT count(*) AS nothing_left FROM invitetomedia.email_claim();

-- sent: marked and scrubbed; a second confirmation is a no-op
SELECT message_id AS m1 FROM invitetomedia.outbox WHERE to_email = 'm1@outside.example' \gset
SELECT invitetomedia.email_sent(:m1) AS marked, invitetomedia.email_sent(:m1) AS marked_again;
SELECT sent_at IS NOT NULL AS sent, body IS NULL AS body_scrubbed FROM invitetomedia.outbox WHERE message_id = :m1;
SELECT invitetomedia.email_sent(-1) AS unknown_message;

-- failed: retried with exponential backoff, dead after email_max_attempts
SELECT message_id AS m2 FROM invitetomedia.outbox WHERE to_email = 'm2@outside.example' \gset
SELECT invitetomedia.email_failed(:m2, 'sendmail exited with 75') AS state;
SELECT attempts, last_error, next_attempt_at - now() BETWEEN interval '9 seconds' AND interval '10 seconds' AS retry_in_10s
  FROM invitetomedia.outbox WHERE message_id = :m2;
UPDATE invitetomedia.outbox SET next_attempt_at = now() WHERE message_id = :m2;
SELECT to_email FROM invitetomedia.email_claim(1);
SELECT invitetomedia.email_failed(:m2, 'again') AS state;
SELECT attempts, next_attempt_at - now() BETWEEN interval '19 seconds' AND interval '20 seconds' AS retry_in_20s
  FROM invitetomedia.outbox WHERE message_id = :m2;
UPDATE invitetomedia.outbox SET next_attempt_at = now() WHERE message_id = :m2;
SELECT to_email FROM invitetomedia.email_claim(1);
SELECT invitetomedia.email_failed(:m2, 'for good') AS state;
SELECT invitetomedia.email_failed(:m2, 'after death') AS state_after_death;
SELECT state, attempts, last_error FROM invitetomedia.email_messages WHERE message_id = :m2;
UPDATE invitetomedia.outbox SET next_attempt_at = now() WHERE message_id = :m2;
SELECT count(*) AS dead_not_claimed FROM invitetomedia.email_claim(10) WHERE message_id = :m2;

-- a lease that runs out makes the message due again; its last attempt makes it dead
SELECT message_id AS m3 FROM invitetomedia.outbox WHERE to_email = 'm3@outside.example' \gset
UPDATE invitetomedia.outbox SET next_attempt_at = now() - interval '1 second' WHERE message_id = :m3;
SELECT to_email, body IS NOT NULL AS has_body FROM invitetomedia.email_claim(1);
UPDATE invitetomedia.outbox SET attempts = 3, next_attempt_at = now() - interval '1 second' WHERE message_id = :m3;
SELECT count(*) AS reclaimed FROM invitetomedia.email_claim(10) WHERE message_id = :m3;
SELECT state, last_error FROM invitetomedia.email_messages WHERE message_id = :m3;

-- the DBA's views hold no bodies
SELECT state, messages, oldest IS NOT NULL AS has_oldest FROM invitetomedia.email_queue;
SELECT attname FROM pg_attribute
 WHERE attrelid IN ('invitetomedia.email_queue'::regclass, 'invitetomedia.email_messages'::regclass)
   AND attname IN ('body', 'subject') AND attnum > 0;

-- bad arguments
SELECT pg_temp.try('SELECT * FROM invitetomedia.email_claim(0)');
SELECT pg_temp.try('SELECT * FROM invitetomedia.email_claim(1001)');
SELECT pg_temp.try($$SELECT * FROM invitetomedia.email_claim(1, '0')$$);
SELECT pg_temp.try('SELECT * FROM invitetomedia.email_claim(NULL)');
SELECT pg_temp.try('SELECT invitetomedia.email_sent(NULL)');
SELECT pg_temp.try('SELECT invitetomedia.email_failed(NULL, ''x'')');
