# Crash safety: concurrent consumes and creates (pgbench, several clients)
# while the server is killed with an immediate shutdown, several times.
#
# After every restart (crash recovery) the invariants must hold:
#  - for every invite use_count <= max_uses (unless unlimited, -1), and
#    use_count equals the number of its 'ok' redemption records: no use is
#    counted twice or lost;
#  - used_up_at is set exactly when a limited link has no use left;
#  - every invite whose creation committed exists (the token was saved by
#    the same transaction) and, created with send_email, has its outbox
#    message; no redemption or message without its invite;
#  - every user named by an 'ok' redemption exists;
#  - the B-tree indexes of the extension's tables are consistent (amcheck).
# The load must make progress between crashes, and pgbench must still be
# running when the server is killed, or the round proves nothing.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $rounds = $ENV{CRASH_ROUNDS} || 5;
my $clients = 6;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
# the default test cluster runs with fsync = off; a crash test should not
$node->append_conf('postgresql.conf', qq{
fsync = on
synchronous_commit = on
max_connections = 40
restart_after_crash = off
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION invitetomedia CASCADE;
CREATE EXTENSION amcheck;
INSERT INTO invitetomedia.email_templates VALUES
  ('t', 'Invitation to {MEDIA_TITLE}', 'Hello {FIRST_NAME}, {URL}');
UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 't';
INSERT INTO invitetomedia.users VALUES ('owner', 'owner@site.example', 'O', 'Owner', 'admin');
INSERT INTO invitetomedia.media VALUES ('m1', 'video', 'Film', 'owner');
-- the tokens, saved in the transaction that creates the link
CREATE TABLE public.tok (id bigserial PRIMARY KEY, token text NOT NULL, email text NOT NULL);
});

# 200 links to start with: single use, 2 uses, 5 uses, unlimited
for my $reuse (1, 2, 5, -1)
{
	$node->safe_psql('postgres', qq{
	UPDATE invitetomedia.settings SET link_reusability = $reuse;
	INSERT INTO public.tok (token, email)
	SELECT c.token, e.email
	  FROM generate_series(1, 50) g,
	       LATERAL (SELECT 'r${reuse}x' || g || '\@new.example' AS email) e,
	       LATERAL invitetomedia.invite_create('m1', 'owner', e.email, 'F', 'L', 'viewer', true) c;
	});
}
$node->safe_psql('postgres', 'UPDATE invitetomedia.settings SET link_reusability = 2');

my $dir = PostgreSQL::Test::Utils::tempdir;
open my $fh, '>', "$dir/consume.sql" or die;
# a random link; a quarter of the tries with a device, a quarter with a wrong email
print $fh q{
\set k random(1, 1000000000)
\set d random(1, 4)
SELECT c.status
  FROM public.tok t,
       LATERAL invitetomedia.invite_consume(
           t.token,
           CASE WHEN :d = 4 THEN 'wrong@new.example' ELSE t.email END,
           CASE WHEN :d = 3 THEN 'dev' || (:k % 3) END) c
 WHERE t.id = 1 + :k % (SELECT max(id) FROM public.tok);
};
close $fh;
open $fh, '>', "$dir/create.sql" or die;
print $fh q{
\set n random(1, 1000000000)
INSERT INTO public.tok (token, email)
SELECT c.token, 'n' || :n || '@new.example'
  FROM invitetomedia.invite_create('m1', 'owner', 'n' || :n || '@new.example',
                                   'First', 'Last', 'viewer', true) c;
};
close $fh;

my %checks = (
	'use_count <= max_uses' => q{
		SELECT count(*) FROM invitetomedia.invites
		 WHERE max_uses <> -1 AND use_count > max_uses},
	'use_count = ok redemptions' => q{
		SELECT count(*) FROM invitetomedia.invites i
		 WHERE i.use_count <> (SELECT count(*) FROM invitetomedia.redemptions r
		                        WHERE r.invite_id = i.invite_id AND r.status = 'ok')},
	'used_up_at set exactly when used up' => q{
		SELECT count(*) FROM invitetomedia.invites
		 WHERE (used_up_at IS NOT NULL) <> (max_uses <> -1 AND use_count >= max_uses)},
	'every committed invite exists' => q{
		SELECT count(*) FROM public.tok t
		 WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.invites i
		                    WHERE i.token_hash = digest(t.token, 'sha256'))},
	'no invite without its saved token' => q{
		SELECT count(*) FROM invitetomedia.invites i
		 WHERE NOT EXISTS (SELECT 1 FROM public.tok t
		                    WHERE i.token_hash = digest(t.token, 'sha256'))},
	'every invite has its outbox message' => q{
		SELECT count(*) FROM invitetomedia.invites i
		 WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.outbox o
		                    WHERE o.invite_id = i.invite_id)},
	'no orphan redemption or message' => q{
		SELECT (SELECT count(*) FROM invitetomedia.redemptions r
		         WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.invites i
		                            WHERE i.invite_id = r.invite_id))
		     + (SELECT count(*) FROM invitetomedia.outbox o
		         WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.invites i
		                            WHERE i.invite_id = o.invite_id))},
	'every redeeming user exists' => q{
		SELECT count(*) FROM invitetomedia.redemptions r
		 WHERE r.status = 'ok'
		   AND NOT EXISTS (SELECT 1 FROM invitetomedia.users u WHERE u.user_id = r.user_id)},
	# counts indexes that were not checked (an inconsistent one raises an error)
	'indexes consistent (amcheck)' => q{
		SELECT count(*) - count(bt_index_parent_check(c.oid, true))
		  FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
		  JOIN pg_am a ON a.oid = c.relam AND a.amname = 'btree'
		 WHERE c.relnamespace = 'invitetomedia'::regnamespace},
);

sub check_invariants
{
	my ($label) = @_;
	my $ok = 1;
	for my $name (sort keys %checks)
	{
		my $bad = $node->safe_psql('postgres', $checks{$name});
		$ok = 0 unless is($bad, '0', "$label: $name");
	}
	return $ok;
}

sub progress
{
	return $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM invitetomedia.invites) || ' '
		    || (SELECT count(*) FROM invitetomedia.redemptions WHERE status = 'ok')});
}

ok(check_invariants('before load'), 'invariants hold before the load');

my $survived = 0;
my ($invites, $oks) = split / /, progress();
my $recoveries = 0;
for my $round (1 .. $rounds)
{
	my ($out, $err) = ('', '');
	my @cmd = ('pgbench', '-n', '-c', $clients, '-j', 2, '-T', 120,
		'-f', "$dir/consume.sql\@3", '-f', "$dir/create.sql\@1",
		'-h', $node->host, '-p', $node->port, 'postgres');
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err);

	# let the load run 2 to 5 seconds, then kill the server under it
	usleep(int(2_000_000 + rand(3_000_000)));
	$h->pump_nb;
	my $running = $h->pumpable;
	$node->stop('immediate');
	eval { $h->finish; };    # pgbench fails: its connections were cut
	ok($running, "round $round: pgbench was running when the server was killed");

	$node->start;
	my $log = slurp_file($node->logfile);
	my $n = () = $log =~ /database system was not properly shut down; automatic recovery in progress/g;
	ok($n > $recoveries, "round $round: the server went through crash recovery");
	$recoveries = $n;

	my ($i2, $o2) = split / /, progress();
	cmp_ok($i2, '>', $invites, "round $round: links were created ($invites -> $i2)");
	cmp_ok($o2, '>', $oks, "round $round: links were consumed ($oks -> $o2)");
	($invites, $oks) = ($i2, $o2);

	$survived++ if check_invariants("after crash $round") && $running;
}

# the links still work after all this
my $tok = $node->safe_psql('postgres', q{
	SELECT t.token || ' ' || t.email FROM public.tok t
	  JOIN invitetomedia.invites i ON i.token_hash = digest(t.token, 'sha256')
	 WHERE i.use_count = 0 ORDER BY t.id DESC LIMIT 1});
my ($token, $email) = split / /, $tok;
is($node->safe_psql('postgres',
	"SELECT status FROM invitetomedia.invite_consume('$token', '$email')"),
	'ok', 'an unused link made under load consumes after the crashes');

is($survived, $rounds, "all $rounds crashes survived");
diag("crashes survived: $survived of $rounds ($invites invites, $oks uses)");

$node->stop;
done_testing();
