# Soak: 8 clients for SOAK_SECONDS (default 180) mixing invite_create,
# invite_consume, invite_check, invite_revoke and invite_purge through
# pgbench custom scripts.  At the end:
#  - pgbench finished without an aborted client;
#  - the invariants hold (as in t/020_crash.pl): use_count <= max_uses,
#    use_count = 'ok' redemptions, used_up_at consistent, every committed
#    invite that was not purged exists with its outbox message, no orphan
#    records, indexes consistent (amcheck);
#  - the server log holds no ERROR other than the expected ones: a revoke
#    that lost the race against a purge (42704, counted by the wrapper, which
#    catches only that) and serialization failures pgbench retries (40001),
#    and no WARNING, PANIC or FATAL at all.
# Figures (transactions, per-script counts, errors) are printed as diag.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seconds = $ENV{SOAK_SECONDS} || 180;
my $clients = $ENV{SOAK_CLIENTS} || 8;

my $node = PostgreSQL::Test::Cluster->new('soak');
$node->init;
$node->append_conf('postgresql.conf', qq{
log_line_prefix = '%m [%p] %e %q%a '
max_connections = 40
shared_buffers = 128MB
log_min_messages = warning
log_min_error_statement = error
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION invitetomedia CASCADE;
CREATE EXTENSION amcheck;
INSERT INTO invitetomedia.email_templates VALUES
  ('t', 'Invitation to {MEDIA_TITLE}', 'Hello {FIRST_NAME} {LAST_NAME}, {INVITER_NAME} invites you: {URL}');
UPDATE invitetomedia.settings
   SET enabled = true, invite_email_template = 't', link_reusability = 3,
       link_duration = 2;   -- minutes: links expire during the soak and get purged
INSERT INTO invitetomedia.users VALUES
  ('owner', 'owner@site.example', 'O', 'Owner', 'private_only'),
  ('admin', 'admin@site.example', 'A', 'Admin', 'admin');
INSERT INTO invitetomedia.media VALUES ('m1', 'video', 'Film', 'owner'), ('m2', 'room', 'Room', 'owner');
CREATE TABLE public.tok (id bigserial PRIMARY KEY, token text NOT NULL, email text NOT NULL);
CREATE TABLE public.expected_errors (what text, at timestamptz DEFAULT now());
-- revoke a link at or after a random position; losing the race against a
-- purge that deleted it meanwhile is the one error expected here
CREATE FUNCTION public.soak_revoke(k bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
BEGIN
    SELECT invite_id INTO id FROM invitetomedia.invites
     WHERE invite_id >= k % (SELECT coalesce(max(invite_id), 1) FROM invitetomedia.invites)
     ORDER BY invite_id LIMIT 1;
    IF id IS NULL THEN
        RETURN 'none';
    END IF;
    RETURN invitetomedia.invite_revoke(id, CASE WHEN k % 2 = 0 THEN 'owner' ELSE 'admin' END)::text;
EXCEPTION WHEN undefined_object THEN
    INSERT INTO public.expected_errors (what) VALUES ('revoke lost to purge: ' || SQLERRM);
    RETURN 'gone';
END $$;
});

my $dir = PostgreSQL::Test::Utils::tempdir;
my %scripts = (
	create => [ 3, q{
\set n random(1, 1000000000)
\set m random(1, 2)
INSERT INTO public.tok (token, email)
SELECT c.token, 'n' || :n || '@new.example'
  FROM invitetomedia.invite_create('m' || :m, 'owner', 'n' || :n || '@new.example',
                                   'First', 'Last', 'viewer', (:n % 2 = 0)) c;
} ],
	consume => [ 5, q{
\set k random(1, 1000000000)
\set d random(1, 4)
SELECT c.status
  FROM public.tok t,
       LATERAL invitetomedia.invite_consume(
           t.token,
           CASE WHEN :d = 4 THEN 'wrong@new.example' ELSE upper(t.email) END,
           CASE WHEN :d = 3 THEN 'dev' || (:k % 3) END) c
 WHERE t.id = 1 + :k % (SELECT max(id) FROM public.tok);
} ],
	check => [ 3, q{
\set k random(1, 1000000000)
SELECT c.status FROM public.tok t, LATERAL invitetomedia.invite_check(t.token) c
 WHERE t.id = 1 + :k % (SELECT max(id) FROM public.tok);
} ],
	revoke => [ 1, q{
\set k random(1, 1000000000)
SELECT public.soak_revoke(:k);
} ],
	purge => [ 1, q{
\set p random(0, 3)
SELECT invitetomedia.invite_purge(make_interval(secs => :p * 10));
} ],
);
my @files;
for my $name (sort keys %scripts)
{
	my $f = "$dir/$name.sql";
	open my $fh, '>', $f or die;
	print $fh $scripts{$name}[1];
	close $fh;
	push @files, '-f', "$f\@$scripts{$name}[0]";
}

# a first batch of links so that consume has something to do
$node->safe_psql('postgres', q{
INSERT INTO public.tok (token, email)
SELECT c.token, e.email FROM generate_series(1, 200) g,
       LATERAL (SELECT 'seed' || g || '@new.example' AS email) e,
       LATERAL invitetomedia.invite_create('m1', 'owner', e.email, 'S', 'Eed', 'viewer', true) c;
});

my $log_offset = -s $node->logfile;
my ($out, $err) = ('', '');
my $ok = IPC::Run::run(
	[ 'pgbench', '-n', '-c', $clients, '-j', 2, '-T', $seconds,
		'--max-tries', 10, '--failures-detailed', @files,
		'-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
ok($ok, 'pgbench exited successfully') or diag($err);
unlike($out . $err, qr/aborted in command|client \d+ aborted/, 'no client aborted');

my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;
my ($failed) = $out =~ /number of failed transactions: (\d+)/;
my ($retried) = $out =~ /number of transactions retried: (\d+)/;
my ($tps) = $out =~ /tps = ([\d.]+)/;
ok(defined $tx && $tx > 0, 'transactions were processed');
is($failed // 0, 0, 'no transaction failed after retries');
my %per;
while ($out =~ m{SQL script \d+: \S*/(\w+)\.sql\n(?:.*\n)*? - (\d+) transactions}g)
{
	$per{$1} = $2;
}

# invariants
my %checks = (
	'use_count <= max_uses' => q{
		SELECT count(*) FROM invitetomedia.invites WHERE max_uses <> -1 AND use_count > max_uses},
	'use_count = ok redemptions' => q{
		SELECT count(*) FROM invitetomedia.invites i
		 WHERE i.use_count <> (SELECT count(*) FROM invitetomedia.redemptions r
		                        WHERE r.invite_id = i.invite_id AND r.status = 'ok')},
	'used_up_at set exactly when used up' => q{
		SELECT count(*) FROM invitetomedia.invites
		 WHERE (used_up_at IS NOT NULL) <> (max_uses <> -1 AND use_count >= max_uses)},
	'no invite without its saved token' => q{
		SELECT count(*) FROM invitetomedia.invites i
		 WHERE NOT EXISTS (SELECT 1 FROM public.tok t WHERE i.token_hash = digest(t.token, 'sha256'))},
	'a revoked link has no unsent message' => q{
		SELECT count(*) FROM invitetomedia.invites i JOIN invitetomedia.outbox o USING (invite_id)
		 WHERE i.revoked_at IS NOT NULL AND o.sent_at IS NULL},
	'every unrevoked link made with email has its message' => q{
		SELECT count(*) FROM invitetomedia.invites i
		 WHERE i.revoked_at IS NULL
		   AND (i.first_name = 'S'
		        OR (i.first_name = 'First'
		            AND substring(i.email FROM '^n([0-9]+)@')::bigint % 2 = 0))
		   AND NOT EXISTS (SELECT 1 FROM invitetomedia.outbox o WHERE o.invite_id = i.invite_id)},
	# a record outliving its link: purge deletes a link with its records
	'no orphan redemption record' => q{
		SELECT count(*) FROM invitetomedia.redemptions r
		 WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.invites i WHERE i.invite_id = r.invite_id)},
	'no orphan outbox message' => q{
		SELECT count(*) FROM invitetomedia.outbox o
		 WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.invites i WHERE i.invite_id = o.invite_id)},
	'indexes consistent (amcheck)' => q{
		SELECT count(*) - count(bt_index_parent_check(c.oid, true))
		  FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
		  JOIN pg_am a ON a.oid = c.relam AND a.amname = 'btree'
		 WHERE c.relnamespace = 'invitetomedia'::regnamespace},
);
for my $name (sort keys %checks)
{
	is($node->safe_psql('postgres', $checks{$name}), '0', "invariant: $name");
}
diag('orphan records by status: ' . $node->safe_psql('postgres', q{
	SELECT string_agg(status || ' x' || n, ', ') FROM (
	  SELECT r.status, count(*) AS n FROM invitetomedia.redemptions r
	   WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.invites i WHERE i.invite_id = r.invite_id)
	   GROUP BY r.status ORDER BY r.status) s}))
  if $node->safe_psql('postgres', $checks{'no orphan redemption record'}) ne '0';

# the server log, from the start of the load
my $log = slurp_file($node->logfile, $log_offset);
my (%errors, @unexpected);
for my $line (split /\n/, $log)
{
	next unless $line =~ /^\S+ \S+ \S+ \[\d+\] (\w{5}) .*?\b(ERROR|WARNING|FATAL|PANIC):  (.*)$/;
	my ($code, $level, $msg) = ($1, $2, $3);
	$errors{"$level $code"}++;
	# the server cancelling its own autovacuum, whose truncation of a table
	# gives way to any backend that waits for the table's lock (here the
	# checks above), is no error of the extension or its callers
	next if $level eq 'ERROR' && $code eq '57014' && $msg eq 'canceling autovacuum task';
	push @unexpected, $line
	  unless $level eq 'ERROR' && $code eq '40001'
	  && $msg =~ /^could not (consume the invite because of concurrent updates|serialize access)/;
}
is(scalar(@unexpected), 0, 'no unexpected ERROR, WARNING, FATAL or PANIC in the server log')
  or diag(join("\n", @unexpected[ 0 .. ($#unexpected < 20 ? $#unexpected : 20) ]));

my $stats = $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM public.tok) || ' links made, '
	    || (SELECT count(*) FROM invitetomedia.invites) || ' kept, '
	    || (SELECT count(*) FROM invitetomedia.redemptions WHERE status = 'ok') || ' uses kept, '
	    || (SELECT count(*) FROM invitetomedia.invites WHERE revoked_at IS NOT NULL) || ' revoked kept, '
	    || (SELECT count(*) FROM public.expected_errors) || ' revokes lost to a purge'});
diag("soak: $clients clients, $seconds s, " . ($tx // 0) . " transactions ("
	  . join(', ', map { "$_ $per{$_}" } sort keys %per) . "), "
	  . sprintf('%.0f', $tps // 0) . ' tps, '
	  . ($retried // 0) . ' retried, ' . ($failed // 0) . ' failed');
diag("soak: $stats");
diag('soak: server log: '
	  . (%errors ? join(', ', map { "$_ x$errors{$_}" } sort keys %errors) : 'no errors'));

$node->stop;
done_testing();
