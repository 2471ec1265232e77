# The rate limit per inviter under load (issue 10, "Rate limit per
# inviter": "8 sessions creating for the same inviter with a limit of 50
# get exactly 50 successes").  pgbench runs 8 clients that all create links
# for one inviter with settings.invites_per_hour = 50, far more attempts than
# the limit allows; exactly 50 links are created, every other attempt is
# refused with 53400 and a message that names the limit, and nothing else
# goes wrong.  pgbench aborts a client on any error, so each attempt runs
# in a function that catches 53400 (and only 53400) and records the outcome.
#
# Round 1: invite links only.  Round 2: another inviter, invite links and
# guest links mixed (they count together); each guest link goes to a media
# of its own, so the three-per-media limit (54000) never applies.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients = 8;
my $per_client = 25;                       # 200 attempts per round
my $attempts = $clients * $per_client;
my $limit = 50;

my $node = PostgreSQL::Test::Cluster->new('rate_limit');
$node->init;
$node->append_conf('postgresql.conf', 'max_connections = 40');
$node->start;

$node->safe_psql('postgres', qq{
CREATE EXTENSION invitetomedia CASCADE;
UPDATE invitetomedia.settings SET enabled = true, invites_per_hour = $limit;
INSERT INTO invitetomedia.users VALUES
  ('owner', 'owner\@site.example', 'O', 'Owner', 'private_only'),
  ('host', 'host\@site.example', 'H', 'Host', 'private_only');
INSERT INTO invitetomedia.media VALUES ('m1', 'video', 'Film', 'owner');
INSERT INTO invitetomedia.media
  SELECT 'g' || n, 'webcast', 'Session ' || n, 'host' FROM generate_series(0, $attempts) n;

-- every attempt: who, what, and 'ok' or the SQLSTATE and message
CREATE TABLE public.outcome (
  attempt bigserial PRIMARY KEY,
  client integer NOT NULL,
  actor text NOT NULL,
  kind text NOT NULL,
  result text NOT NULL,
  message text
);
CREATE SEQUENCE public.email_seq;
CREATE SEQUENCE public.media_seq;

-- one creation; 53400 is recorded, any other error aborts the client
CREATE FUNCTION public.try_create(client integer, actor text, kind text) RETURNS text
LANGUAGE plpgsql AS \$\$
BEGIN
    BEGIN
        IF kind = 'invite' THEN
            PERFORM * FROM invitetomedia.invite_create(
                CASE actor WHEN 'owner' THEN 'm1' ELSE 'g0' END, actor,
                'guest' || nextval('public.email_seq') || '\@new.example', 'First', 'Last');
        ELSE
            PERFORM * FROM invitetomedia.guest_link_create(
                'g' || nextval('public.media_seq'), actor, 'Audience');
        END IF;
    EXCEPTION WHEN configuration_limit_exceeded THEN
        INSERT INTO public.outcome (client, actor, kind, result, message)
            VALUES (client, actor, kind, '53400', SQLERRM);
        RETURN '53400';
    END;
    INSERT INTO public.outcome (client, actor, kind, result) VALUES (client, actor, kind, 'ok');
    RETURN 'ok';
END
\$\$;
});

# runs pgbench for one round; every client must finish all its attempts
sub round
{
	my ($name, $files) = @_;
	$node->pgbench(
		"-n -c $clients -j $clients -t $per_client -h " . $node->host . ' -p ' . $node->port . ' postgres',
		0,
		[
			qr{number of clients: $clients},
			qr{number of transactions actually processed: $attempts/$attempts},
			qr{number of failed transactions: 0 }
		],
		[qr{^$}],
		"$name: pgbench, $clients clients, $attempts attempts, no client aborted",
		$files);
}

sub query
{
	return $node->safe_psql('postgres', shift);
}

# round 1: invite links for 'owner'
round('invites', { '090_invite' => q{SELECT public.try_create(:client_id, 'owner', 'invite');} });

is(query(q{SELECT count(*) FROM public.outcome WHERE actor = 'owner'}), $attempts,
	'invites: every attempt recorded');
is(query(q{SELECT count(*) FROM public.outcome WHERE actor = 'owner' AND result = 'ok'}), $limit,
	"invites: exactly $limit attempts succeeded");
is(query(q{SELECT count(*) FROM public.outcome WHERE actor = 'owner' AND result = '53400'}),
	$attempts - $limit, 'invites: every other attempt was refused with 53400');
is(query(q{SELECT count(*) FROM invitetomedia.invites WHERE invited_by = 'owner'}), $limit,
	"invites: exactly $limit invites exist");
is(query(q{SELECT string_agg(DISTINCT message, ' | ') FROM public.outcome
            WHERE actor = 'owner' AND result = '53400'}),
	qq{user "owner" has reached the limit of $limit new links per hour},
	'invites: the refusal names the limit');
diag('invites: successes per client: '
	  . query(q{SELECT string_agg(client || ':' || n, ' ' ORDER BY client)
	              FROM (SELECT client, count(*) AS n FROM public.outcome
	                     WHERE actor = 'owner' AND result = 'ok' GROUP BY client) c}));

# round 2: invite links and guest links for 'host', together under one limit
round('invites and guest links', {
	'090_mixed_invite@1' => q{SELECT public.try_create(:client_id, 'host', 'invite');},
	'090_mixed_guest@1' => q{SELECT public.try_create(:client_id, 'host', 'guest');} });

is(query(q{SELECT count(*) FROM public.outcome WHERE actor = 'host'}), $attempts,
	'mixed: every attempt recorded');
is(query(q{SELECT count(*) FROM public.outcome WHERE actor = 'host' AND result = 'ok'}), $limit,
	"mixed: exactly $limit attempts succeeded");
is(query(q{SELECT count(*) FROM public.outcome WHERE actor = 'host' AND result = '53400'}),
	$attempts - $limit, 'mixed: every other attempt was refused with 53400');
is(query(q{SELECT (SELECT count(*) FROM invitetomedia.invites WHERE invited_by = 'host')
                + (SELECT count(*) FROM invitetomedia.guest_links WHERE created_by = 'host')}),
	$limit, "mixed: exactly $limit invite and guest links exist");
is(query(q{SELECT (SELECT count(*) FROM invitetomedia.invites WHERE invited_by = 'host')
                  = (SELECT count(*) FROM public.outcome WHERE actor = 'host' AND kind = 'invite' AND result = 'ok')
              AND (SELECT count(*) FROM invitetomedia.guest_links WHERE created_by = 'host')
                  = (SELECT count(*) FROM public.outcome WHERE actor = 'host' AND kind = 'guest' AND result = 'ok')}),
	't', 'mixed: the links that exist are the ones reported created');
diag('mixed: created '
	  . query(q{SELECT string_agg(kind || ' ' || n, ', ' ORDER BY kind)
	              FROM (SELECT kind, count(*) AS n FROM public.outcome
	                     WHERE actor = 'host' AND result = 'ok' GROUP BY kind) k}));

# the first inviter's count is its own: 'owner' is still at the limit
is(query(q{SELECT count(*) FROM invitetomedia.invites WHERE invited_by = 'owner'}), $limit,
	'the second round left the first inviter\'s links alone');

$node->stop;
done_testing();
