# The event relay on 2.0 databases (issue 22, docs/design-2.0.md section 7):
# 2.0 draws its ids at random, so the relay follows event_seq, a counter
# the writers draw only where the relay serves the database.
#
# One cluster with the library preloaded; two 2.0 databases with the same
# two tenants (acme, globex), one site each, a mapped role each:
#   listed    relayed
#   unlisted  not relayed: the writers notify in their own transactions
#
# The checks:
#   1   the relay of listed runs and keeps three origins (of the event_seq
#       sequences)
#   2   the same calls in both databases give the same notifications, each
#       once, with the tenant in the payload; in listed every one comes
#       from the relay, in unlisted from the writers
#   3   listed's ok records (uses, joins, messages) have event_seq, its
#       refusals none; unlisted's have none: no sequence was touched there
#   4   nothing before COMMIT; a rolled back use never
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $wait_timeout = 30;

my $node = PostgreSQL::Test::Cluster->new('v2relay');
$node->init;
$node->start;

my $setup = q{
CREATE EXTENSION invitetomedia VERSION '2.0' CASCADE;
SELECT invitetomedia.tenant_create('acme');
SELECT invitetomedia.tenant_create('globex');
SELECT invitetomedia.site_create(t.tenant_id, t.name || '-kms', 'https://' || t.name || '.example/i/')
  FROM invitetomedia.tenants t WHERE t.name IN ('acme', 'globex');
INSERT INTO invitetomedia.email_templates (tenant_id, site_id, name, subject, body)
SELECT s.tenant_id, s.site_id, 't', 'Invitation to {MEDIA_TITLE}', 'Hello {FIRST_NAME}, {URL}'
  FROM invitetomedia.sites s WHERE s.site_id LIKE '%-kms';
SELECT invitetomedia.site_configure(s, '{"enabled": true, "invite_email_template": "t"}')
  FROM unnest(ARRAY['acme-kms', 'globex-kms']) s;
INSERT INTO invitetomedia.users (tenant_id, user_id, email, role)
SELECT t.tenant_id, 'owner', 'owner@' || t.name || '.example', 'admin'
  FROM invitetomedia.tenants t WHERE t.name IN ('acme', 'globex');
INSERT INTO invitetomedia.media (tenant_id, media_id, media_type, title, owner_id)
SELECT t.tenant_id, 'w1', 'webcast', 'Cast', 'owner'
  FROM invitetomedia.tenants t WHERE t.name IN ('acme', 'globex');
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_acme') THEN
    CREATE ROLE app_acme; CREATE ROLE app_globex;
  END IF;
END $$;
INSERT INTO invitetomedia.tenant_roles (role_name, tenant_id)
SELECT 'app_' || t.name, t.tenant_id FROM invitetomedia.tenants t WHERE t.name IN ('acme', 'globex');
GRANT USAGE ON SCHEMA invitetomedia TO app_acme, app_globex;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA invitetomedia TO app_acme, app_globex;
};
for my $db (qw(listed unlisted))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, $setup);
}
my %tenant = map { $_ => $node->safe_psql('listed',
		"SELECT tenant_id FROM invitetomedia.tenants WHERE name = '$_'") } qw(acme globex);
is($node->safe_psql('unlisted', "SELECT string_agg(name || '=' || tenant_id, ',' ORDER BY name) FROM invitetomedia.tenants WHERE name <> 'default'"),
	"acme=$tenant{acme},globex=$tenant{globex}", 'both databases have the same tenant ids');

$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'invitetomedia'
invitetomedia.relay_databases = 'listed'
});
$node->restart;

sub poll_until
{
	my ($cond, $timeout) = @_;
	my $end = time + ($timeout // $wait_timeout);
	while (1)
	{
		return 1 if $cond->();
		return 0 if time > $end;
		usleep(100_000);
	}
}

sub relay_pid
{
	return $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		 WHERE backend_type = 'invitetomedia relay' AND datname = 'listed'});
}

sub listener
{
	my ($db) = @_;
	my $s = $node->background_psql($db);
	$s->set_query_timer_restart;
	$s->query_safe('LISTEN invitetomedia_accepted; LISTEN invitetomedia_email');
	return { s => $s, got => [] };
}

sub drain
{
	my ($l) = @_;
	my $out = $l->{s}->query_safe('SELECT 1');
	while ($out =~
		/^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process with PID (\d+)\.\r?$/mg)
	{
		push @{ $l->{got} }, { key => "$1 $2", pid => $3 };
	}
	return;
}

sub collect_until
{
	my ($l, $n, $timeout) = @_;
	poll_until(sub { drain($l); scalar(@{ $l->{got} }) >= $n }, $timeout);
	usleep(500_000);    # and a little more: what comes twice must be seen
	drain($l);
	my @got = @{ $l->{got} };
	$l->{got} = [];
	return @got;
}

# 1
ok(poll_until(sub { slurp_file($node->logfile) =~
		/invitetomedia relay: announcing the events of database "listed" from now on/ }),
	'1: the relay announces the events of database listed');
my $relay = relay_pid();
ok($relay ne '', '1: a relay backend in listed');
is($node->safe_psql('listed', q{
	SELECT count(*) FROM pg_replication_origin o, pg_class c
	 WHERE c.relnamespace = 'invitetomedia'::regnamespace AND c.relkind = 'S'
	   AND c.relname LIKE '%\_event\_seq'
	   AND o.roname = 'invitetomedia_' || (SELECT oid FROM pg_database WHERE datname = 'listed') || '_' || c.oid}),
	'3', '1: its cursors are three origins, of the event_seq sequences');

# 2: the same calls in both databases
sub calls
{
	my ($db) = @_;
	my @ids;
	for my $t (qw(acme globex))
	{
		my $as = "SET ROLE app_$t;";
		my ($iid, $tok) = split / /, $node->safe_psql($db, "$as SELECT invite_id || ' ' || token FROM invitetomedia.invite_create_at('$t-kms', 'w1', 'owner', 'a\@$t.example', 'A', 'B', 'viewer', true)");
		my $mid = $node->safe_psql($db, "SELECT message_id FROM invitetomedia.outbox WHERE tenant_id = $tenant{$t} AND invite_id = $iid");
		my $st = $node->safe_psql($db, "$as SELECT status FROM invitetomedia.invite_consume('$tok', 'a\@$t.example')");
		my $bad = $node->safe_psql($db, "$as SELECT status FROM invitetomedia.invite_consume('$tok', 'a\@$t.example')");
		my ($gid, $gtok) = split / /, $node->safe_psql($db, "$as SELECT guest_link_id || ' ' || token FROM invitetomedia.guest_link_create('w1', 'owner', 'All')");
		my $gst = $node->safe_psql($db, "$as SELECT status FROM invitetomedia.guest_link_join_at('$t-kms', '$gtok', 'g\@x.example', 'G', 'X')");
		push @ids, { t => $tenant{$t}, invite => $iid, message => $mid, guest => $gid,
			statuses => "$st,$bad,$gst" };
	}
	return @ids;
}

my %got;
for my $db (qw(listed unlisted))
{
	my $l = listener($db);
	my @ids = calls($db);
	is(join(' ', map { $_->{statuses} } @ids), 'ok,exhausted,ok ok,exhausted,ok',
		"2: $db: the calls answer as they should");
	my @want = sort map {
		("invitetomedia_email {\"tenant\":$_->{t},\"id\":$_->{message}}",
		 "invitetomedia_accepted {\"kind\":\"invite\",\"tenant\":$_->{t},\"id\":$_->{invite}}",
		 "invitetomedia_accepted {\"kind\":\"guest_link\",\"tenant\":$_->{t},\"id\":$_->{guest}}")
	} @ids;
	my @n = collect_until($l, scalar(@want));
	is(join("\n", sort map { $_->{key} } @n), join("\n", @want),
		"2: $db: one notification per event, with its tenant");
	$got{$db} = \@n;
	$l->{s}->quit;
}
is(scalar(@{ $got{listed} }) . ' ' . scalar(grep { $_->{pid} != $relay } @{ $got{listed} }), '6 0',
	'2: listed: every notification (six) comes from the relay');
is(scalar(@{ $got{unlisted} }) . ' ' . scalar(grep { $_->{pid} == $relay } @{ $got{unlisted} }), '6 0',
	'2: unlisted: every notification (six) comes from the writers, none from a relay');

# 3: the counter
is($node->safe_psql('listed', q{
	SELECT (SELECT count(*) FILTER (WHERE event_seq IS NULL) || '/' || count(*) FILTER (WHERE status = 'ok') FROM invitetomedia.redemptions WHERE status = 'ok')
	 || ' ' || (SELECT count(*) FROM invitetomedia.redemptions WHERE status <> 'ok' AND event_seq IS NOT NULL)
	 || ' ' || (SELECT count(*) FILTER (WHERE event_seq IS NULL) || '/' || count(*) FROM invitetomedia.guest_link_joins WHERE status = 'ok')
	 || ' ' || (SELECT count(*) FILTER (WHERE event_seq IS NULL) || '/' || count(*) FROM invitetomedia.outbox)}),
	'0/2 0 0/2 0/2', '3: listed: every ok record and message has event_seq, no refusal has');
is($node->safe_psql('unlisted', q{
	SELECT (SELECT count(*) FROM invitetomedia.redemptions WHERE event_seq IS NOT NULL)
	     + (SELECT count(*) FROM invitetomedia.guest_link_joins WHERE event_seq IS NOT NULL)
	     + (SELECT count(*) FROM invitetomedia.outbox WHERE event_seq IS NOT NULL)
	 || ' ' || (SELECT count(*) FROM pg_sequences WHERE schemaname = 'invitetomedia'
	             AND sequencename LIKE '%event_seq' AND last_value IS NOT NULL)}),
	'0 0', '3: unlisted: no event_seq drawn, its sequences untouched');

# 4: nothing before COMMIT, a rollback never
{
	my $l = listener('listed');
	my $w = $node->background_psql('listed');
	my ($iid, $tok) = split / /, $node->safe_psql('listed', q{SET ROLE app_acme; SELECT invite_id || ' ' || token FROM invitetomedia.invite_create_at('acme-kms', 'w1', 'owner', 'c@acme.example', 'C', 'D', 'viewer', false, NULL)});
	$w->query_safe(qq{BEGIN; SET ROLE app_acme; SELECT status FROM invitetomedia.invite_consume('$tok', 'c\@acme.example')});
	my @early = collect_until($l, 1, 2);
	is(scalar(@early), 0, '4: nothing while the use is not committed');
	$w->query_safe('ROLLBACK');
	my @rolled = collect_until($l, 1, 2);
	is(scalar(@rolled), 0, '4: nothing for a rolled back use');
	$w->query_safe(qq{BEGIN; SET ROLE app_acme; SELECT status FROM invitetomedia.invite_consume('$tok', 'c\@acme.example'); COMMIT});
	my @late = collect_until($l, 1);
	is(join(',', map { $_->{key} } @late),
		"invitetomedia_accepted {\"kind\":\"invite\",\"tenant\":$tenant{acme},\"id\":$iid}",
		'4: the committed use, once, from the relay');
	$w->quit;
	$l->{s}->quit;
}

done_testing();
