# The update to 1.1 (issue 10) on databases that hold live invites: a site
# at 1.0 (and one at 1.0.1) with invites in every state (unused, partly used
# multi-use, exhausted, revoked, expired, unlimited), redemptions of every
# kind, messages in the outbox and a DBA's grants to an application role on
# invite_create, invite_check and invite_consume, updated in place:
#  - 1.0 -> 1.0.1 -> 1.1 step by step, 1.0 -> 1.1 with one ALTER
#    EXTENSION ... UPDATE TO '1.1', and 1.0.1 -> 1.1;
# and after each update
#  - every old token answers invite_check and invite_consume as before (its
#    state kept), the lockout counter starts at 0, nothing is scheduled;
#  - last_used_at holds the time of each link's last 'ok' redemption;
#  - the outbox is unchanged and its pending message still goes out, its
#    link working;
#  - the 1.1 functions work on the old rows (invite_resend of an old
#    invite, the status view, a guest link);
#  - the application role may call the 1.1 invite_create (the 1.0 call
#    form included) and invite_check, and nothing it was not granted; the
#    grants are the DBA's (not in pg_init_privs), so pg_dump keeps them;
#  - the database equals a fresh 1.1 install given the same grants: member
#    objects, relations, columns (types, defaults, NOT NULL, comments),
#    constraints, indexes, triggers, policies, functions (signatures,
#    results, attributes, bodies), views, sequences, privileges (relacl,
#    attacl, proacl, the schema's, pg_init_privs), and pg_dump
#    --schema-only of the detached members (as t/040_upgrade.pl does).
# Also: the library serves one session through 1.0, 1.0.1 and 1.1.
#
# This file is about 1.1: its fresh database is CREATE EXTENSION ... VERSION
# '1.1' and its updates stop at 1.1 (UPDATE TO '1.1'), whatever the default
# version is now.  The update from 1.1 on (1.1.1) is t/047_update_1_1_1.pl's;
# the catalog picture both compare is t/lib/ItmCatalog.pm.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ItmCatalog qw(catalog catalog_parts compare_catalog detached_schema diff_text);

my $ext = 'invitetomedia';
my $node = PostgreSQL::Test::Cluster->new('update11');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE ROLE itm_app LOGIN');

# what a DBA grants the application (README, "Security model"), at the
# version the database is at
sub app_grants
{
	my ($version) = @_;
	my $create = $version eq '1.1'
	  ? 'invitetomedia.invite_create(text, text, text, text, text, text, boolean, timestamptz)'
	  : 'invitetomedia.invite_create(text, text, text, text, text, text, boolean)';
	return qq{
		GRANT USAGE ON SCHEMA invitetomedia TO itm_app;
		GRANT EXECUTE ON FUNCTION $create, invitetomedia.invite_check(text),
		    invitetomedia.invite_consume(text, text, text) TO itm_app;
	};
}

sub version
{
	my ($db) = @_;
	return $node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = '$ext'");
}

# -- a site with live invites, at $version ----------------------------------
# Returns { name => [invite_id, token, email] }.
sub live_site
{
	my ($db, $version) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, qq{
		CREATE EXTENSION $ext VERSION '$version' CASCADE;
		INSERT INTO invitetomedia.email_templates VALUES
		  ('t', 'Invitation to {MEDIA_TITLE}', E'Hello {FIRST_NAME},\\nopen {URL}');
		UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 't',
		       link_base_url = 'https://media.example.com/join/';
		INSERT INTO invitetomedia.users VALUES
		  ('owner', 'owner\@site.example', 'Olga', 'Owner', 'admin'),
		  ('kim', 'kim\@site.example', 'Kim', 'Known', 'viewer');
		INSERT INTO invitetomedia.media VALUES ('m1', 'webcast', 'Launch', 'owner'),
		                                       ('m2', 'video', 'Film', 'owner');
	} . app_grants($version));

	my %inv;
	my $create = sub {
		my ($name, $media, $reuse, $send, $email) = @_;
		$email //= "$name\@new.example";
		my $r = $node->safe_psql($db, qq{
			UPDATE invitetomedia.settings SET link_reusability = $reuse;
			SELECT invite_id || ' ' || token FROM invitetomedia.invite_create(
			    '$media', 'owner', '$email', 'F$name', 'L$name', 'viewer', $send)});
		$inv{$name} = [ split(/ /, $r), $email ];
	};
	my $consume = sub {
		my ($name, $email, $device) = @_;
		$device = defined $device ? "'$device'" : 'NULL';
		return $node->safe_psql($db,
			"SELECT status FROM invitetomedia.invite_consume('$inv{$name}[1]', '$email', $device)");
	};

	# a message that went out (the only one claimed)
	$create->('partial', 'm1', 3, 'true');
	my $sent = $version eq '1.0'
	  ? 'SELECT invitetomedia.email_sent(message_id) FROM invitetomedia.email_claim(10, \'1 minute\')'
	  : 'SELECT invitetomedia.email_sent(message_id, claim_no) FROM invitetomedia.email_claim(10, \'1 minute\')';
	is($node->safe_psql($db, $sent), 't', "$db: a message sent at $version");

	$create->('unused', 'm1', 1, 'true');           # its message pending
	$create->('resendme', 'm2', 1, 'false');
	$create->('exhausted', 'm1', 1, 'false');
	$create->('revoked', 'm2', 2, 'true');          # its message dropped by the revoke
	$create->('expired', 'm2', 1, 'false');
	$create->('unlimited', 'm2', -1, 'false', 'kim@site.example');

	my @steps = (
		[ 'partial', 'partial@new.example', 'd1', 'ok' ],
		[ 'partial', 'partial@new.example', 'd1', 'rejoin' ],
		[ 'partial', 'wrong@new.example', undef, 'email_mismatch' ],
		[ 'exhausted', 'exhausted@new.example', undef, 'ok' ],
		[ 'exhausted', 'exhausted@new.example', undef, 'exhausted' ],
		[ 'unlimited', 'kim@site.example', 'k1', 'ok' ],
		[ 'unlimited', 'Kim@Site.example', 'k2', 'ok' ],
		[ 'unlimited', 'kim@site.example', 'k1', 'rejoin' ],
	);
	for my $s (@steps)
	{
		is($consume->($s->[0], $s->[1], $s->[2]), $s->[3], "$db at $version: $s->[0] answers $s->[3]");
	}
	is($node->safe_psql($db, "SELECT invitetomedia.invite_revoke($inv{revoked}[0], 'owner')"),
		't', "$db at $version: revoked");
	is($consume->('revoked', 'revoked@new.example'), 'revoked', "$db at $version: revoked answers revoked");
	# as the owner (the one role the 1.0.1 guard lets write)
	$node->safe_psql($db, qq{
		UPDATE invitetomedia.invites SET expires_at = now() - interval '1 hour',
		       created_at = now() - interval '2 days'
		 WHERE invite_id = $inv{expired}[0]});
	is($consume->('expired', 'expired@new.example'), 'expired', "$db at $version: expired answers expired");

	# distinct, known times: the last 'ok' of each link is not its last record
	$node->safe_psql($db, q{
		UPDATE invitetomedia.redemptions
		   SET at = timestamptz '2030-01-01 00:00:00+00' + redemption_id * interval '1 hour'});
	is( $node->safe_psql($db, q{
		SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM invitetomedia.redemptions}),
		'email_mismatch,exhausted,expired,ok,rejoin,revoked', "$db at $version: redemptions of every kind");
	return \%inv;
}

# what must hold after the update, read before it
sub before_update
{
	my ($db) = @_;
	return {
		# the last 'ok' of each link (NULL: never used)
		last_ok => $node->safe_psql($db, q{
			SELECT string_agg(i.invite_id || '=' || coalesce(
			           (SELECT max(r.at)::text FROM invitetomedia.redemptions r
			             WHERE r.invite_id = i.invite_id AND r.status = 'ok'), 'NULL'), ' '
			       ORDER BY i.invite_id)
			  FROM invitetomedia.invites i}),
		outbox => outbox($db),
		redemptions => $node->safe_psql($db, q{
			SELECT string_agg(r::text, E'\n' ORDER BY redemption_id) FROM invitetomedia.redemptions r}),
	};
}

sub outbox
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
		SELECT string_agg(format('%s %s %s %s %s sent=%s dead=%s', message_id, invite_id, to_email,
		                         subject, coalesce(body, '(scrubbed)'), sent_at IS NOT NULL,
		                         dead_at IS NOT NULL), E'\n' ORDER BY message_id)
		  FROM invitetomedia.outbox});
}

# -- the checks on an updated database --------------------------------------
sub check_updated
{
	my ($db, $inv, $before, $label) = @_;
	my $q = sub { $node->safe_psql($db, $_[0]) };
	my %id = map { $_ => $inv->{$_}[0] } keys %$inv;
	my %tok = map { $_ => $inv->{$_}[1] } keys %$inv;

	is(version($db), '1.1', "$label: at 1.1");
	is($q->(q{SELECT string_agg(p.oid::regprocedure::text, ' ' ORDER BY p.oid::regprocedure::text) FROM pg_proc p
	           WHERE p.pronamespace = 'invitetomedia'::regnamespace
	             AND p.proname IN ('invite_create', 'invite_check', 'invite_create_1_0', 'invite_check_1_0')}),
		'invitetomedia.invite_check(text) invitetomedia.invite_create(text,text,text,text,text,text,boolean,timestamp with time zone)',
		"$label: one invite_create (with not_before) and one invite_check, the old forms gone");

	# the rows as they were, with the new columns
	is($q->(q{SELECT string_agg(r::text, E'\n' ORDER BY redemption_id) FROM invitetomedia.redemptions r}),
		$before->{redemptions}, "$label: redemptions unchanged");
	is($q->(q{SELECT count(*) FILTER (WHERE not_before IS NOT NULL) || ' ' ||
	                 count(*) FILTER (WHERE failed_attempts <> 0)
	            FROM invitetomedia.invites}),
		'0 0', "$label: no old invite is scheduled, every lockout counter is 0");
	is($q->(q{SELECT string_agg(invite_id || '=' || coalesce(last_used_at::text, 'NULL'), ' '
	                            ORDER BY invite_id)
	            FROM invitetomedia.invites}),
		$before->{last_ok}, "$label: last_used_at = the last 'ok' redemption of each link");
	# the literal times: redemption n is at 2030-01-01 + n hours
	is($q->(qq{SELECT last_used_at = (SELECT at FROM invitetomedia.redemptions
	                                   WHERE invite_id = $id{partial} AND status = 'ok')
	                  AND last_used_at < (SELECT max(at) FROM invitetomedia.redemptions
	                                       WHERE invite_id = $id{partial})
	             FROM invitetomedia.invites WHERE invite_id = $id{partial}}),
		't', "$label: partial: last_used_at is its use, not its later rejoin or wrong email");
	is($q->(qq{SELECT last_used_at FROM invitetomedia.invites WHERE invite_id = $id{unlimited}}),
		$q->(qq{SELECT at FROM invitetomedia.redemptions WHERE invite_id = $id{unlimited}
		         AND status = 'ok' ORDER BY redemption_id DESC LIMIT 1}),
		"$label: unlimited: last_used_at is its second use");
	is($q->(qq{SELECT count(*) FROM invitetomedia.invites WHERE last_used_at IS NULL
	             AND invite_id IN ($id{unused}, $id{resendme}, $id{revoked}, $id{expired})}),
		'4', "$label: links never used have no last_used_at");
	is(outbox($db), $before->{outbox}, "$label: outbox unchanged");

	# the owners' view of the old invites
	is($q->(q{SELECT string_agg(invite_id || ' ' || state, ', ' ORDER BY invite_id)
	            FROM invitetomedia.invite_status}),
		join(', ', map { "$id{$_->[0]} $_->[1]" } sort { $id{ $a->[0] } <=> $id{ $b->[0] } }
			  ([ 'partial', 'used' ], [ 'unused', 'pending' ], [ 'resendme', 'pending' ],
			   [ 'exhausted', 'exhausted' ], [ 'revoked', 'revoked' ], [ 'expired', 'expired' ],
			   [ 'unlimited', 'used' ])),
		"$label: invite_status: pending, used, exhausted, revoked, expired");

	# every old token, through the 1.1 functions
	my $check = sub {
		$q->("SELECT concat_ws('|', status, media_id, role, uses_left, opens_at IS NULL)"
			  . " FROM invitetomedia.invite_check('$_[0]')");
	};
	is($check->($tok{unused}), 'ok|m1|viewer|1|t', "$label: check unused: ok, 1 use left, no opens_at");
	is($check->($tok{partial}), 'ok|m1|viewer|2|t', "$label: check partial: ok, 2 uses left");
	is($check->($tok{unlimited}), 'ok|m2|viewer|t', "$label: check unlimited: ok, uses_left NULL");
	is($check->($tok{exhausted}), 'exhausted|t', "$label: check exhausted: exhausted, the rest NULL");
	is($check->($tok{revoked}), 'revoked|t', "$label: check revoked: revoked");
	is($check->($tok{expired}), 'expired|t', "$label: check expired: expired");

	my $consume = sub {
		my ($name, $email, $device) = @_;
		$device = defined $device ? "'$device'" : 'NULL';
		return $q->("SELECT concat_ws('|', status, invite_id, uses_left) FROM invitetomedia.invite_consume("
			  . "'$inv->{$name}[1]', '$email', $device)");
	};
	is($consume->('partial', 'partial@new.example', 'd1'), 'rejoin|' . $id{partial} . '|2',
		"$label: partial: the device that used it rejoins");
	is($consume->('partial', 'other@new.example'), 'email_mismatch',
		"$label: partial: a wrong email is a mismatch (not locked: the counter started at 0)");
	is($consume->('partial', 'PARTIAL@new.example', 'd2'), 'ok|' . $id{partial} . '|1',
		"$label: partial: a second use, 1 left");
	is($consume->('unused', 'unused@new.example'), 'ok|' . $id{unused} . '|0',
		"$label: unused: consumed, none left");
	is($consume->('unused', 'unused@new.example'), 'exhausted', "$label: unused: then exhausted");
	is($consume->('exhausted', 'exhausted@new.example'), 'exhausted', "$label: exhausted stays exhausted");
	is($consume->('revoked', 'revoked@new.example'), 'revoked', "$label: revoked stays revoked");
	is($consume->('expired', 'expired@new.example'), 'expired', "$label: expired stays expired");
	is($consume->('unlimited', 'kim@site.example', 'k1'), "rejoin|$id{unlimited}",
		"$label: unlimited: a known device rejoins");
	is($consume->('unlimited', 'kim@site.example', 'k3'), "ok|$id{unlimited}",
		"$label: unlimited: a new device uses it");
	is($q->(qq{SELECT last_used_at = (SELECT max(at) FROM invitetomedia.redemptions
	                                   WHERE invite_id = $id{unused} AND status = 'ok')
	             FROM invitetomedia.invites WHERE invite_id = $id{unused}}),
		't', "$label: a use after the update sets last_used_at");

	# the message queued before the update goes out, and its link is the token's
	my $msg = $q->(q{SELECT message_id || ' ' || claim_no || ' ' || to_email || ' ' || (body LIKE '%' || 'https://media.example.com/join/itm_%')
	                   FROM invitetomedia.email_claim(10, '1 minute')});
	my ($mid, $claim, $to, $haslink) = split / /, $msg;
	is("$to $haslink", 'unused@new.example true', "$label: the pending message is claimed, with its link");
	like($q->("SELECT body FROM invitetomedia.outbox WHERE message_id = $mid"),
		qr/\Q$inv->{unused}[1]\E/, "$label: ... the link of the old token");
	is($q->("SELECT invitetomedia.email_sent($mid, $claim)"), 't', "$label: ... and is sent");

	# 1.1 on an old invite: a new token, the old one revoked
	my $new = $q->("SELECT token FROM invitetomedia.invite_resend($id{resendme}, 'owner', false)");
	like($new, qr/^itm_/, "$label: an old invite is resent with a new token");
	is($check->($tok{resendme}), 'revoked|t', "$label: its old token: check answers revoked");
	is($consume->('resendme', 'resendme@new.example'), 'revoked', "$label: its old token: consume answers revoked");
	is($q->("SELECT status FROM invitetomedia.invite_consume('$new', 'resendme\@new.example')"),
		'ok', "$label: its new token works");

	# and the guest links' tables
	my $g = $q->("SELECT token FROM invitetomedia.guest_link_create('m1', 'owner', 'Audience')");
	is($q->("SELECT concat_ws('|', status, media_id, role, user_id) FROM"
		  . " invitetomedia.guest_link_join('$g', 'kim\@site.example', 'Kim', 'Known')"),
		'ok|m1|viewer|kim', "$label: a guest link works");

	# the application role: the 1.1 forms, the 1.0 call form, nothing more
	is($q->(q{SELECT string_agg(p.oid::regprocedure::text || '=' ||
	                            has_function_privilege('itm_app', p.oid, 'EXECUTE'), ' '
	                            ORDER BY p.oid::regprocedure::text)
	            FROM pg_proc p WHERE p.pronamespace = 'invitetomedia'::regnamespace
	             AND p.proname IN ('invite_create', 'invite_check', 'invite_consume', 'invite_resend',
	                               'invite_revoke_all', 'guest_link_create', 'guest_link_join')}),
		'invitetomedia.guest_link_create(text,text,text,integer,integer)=false '
		  . 'invitetomedia.guest_link_join(text,text,text,text,text)=false '
		  . 'invitetomedia.invite_check(text)=true '
		  . 'invitetomedia.invite_consume(text,text,text)=true '
		  . 'invitetomedia.invite_create(text,text,text,text,text,text,boolean,timestamp with time zone)=true '
		  . 'invitetomedia.invite_resend(bigint,text,boolean)=false '
		  . 'invitetomedia.invite_revoke_all(text,text)=false',
		"$label: itm_app may call invite_create (1.1 form), invite_check and invite_consume, nothing new");
	is($q->(q{SET ROLE itm_app;
	          SELECT count(*) FROM invitetomedia.invite_create('m1', 'owner', 'app@new.example', 'A', 'B', 'viewer', false)}),
		'1', "$label: itm_app calls invite_create with the 1.0 arguments");
	is($q->(qq{SET ROLE itm_app;
	           SELECT concat_ws('|', status, opens_at IS NULL) FROM invitetomedia.invite_check('$inv->{partial}[1]')}),
		'ok|t', "$label: itm_app calls invite_check (with opens_at)");
	is($q->(q{SELECT count(*) FROM pg_init_privs i, aclexplode(i.initprivs) a
	           WHERE i.classoid = 'pg_proc'::regclass AND a.grantee = 'itm_app'::regrole}),
		'0', "$label: the carried grants are the DBA's (not in pg_init_privs: pg_dump keeps them)");
	return;
}

# -- a fresh 1.1 with the grants a DBA gives at 1.1 -------------------------
# (1.1 by name: the default version is newer)
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', "CREATE EXTENSION $ext VERSION '1.1' CASCADE" . ';' . app_grants('1.1'));
is(version('fresh'), '1.1', 'a fresh install is at 1.1');
my $fresh = catalog($node, 'fresh');
like($fresh->{functions}, qr/guest_link_join/, 'the catalog picture holds the 1.1 functions');
like($fresh->{functions}, qr/^invitetomedia\.invite_create\(.*\bitm_app=X\//m, '... with their privileges');
like($fresh->{init_privs}, qr/invite_consume/, '... the initial privileges');
like($fresh->{columns}, qr/^invites \d+ last_used_at timestamp with time zone/m, '... the columns');
like($fresh->{policies}, qr/^guest_links guest_links_read /m, '... the policies');
like($fresh->{triggers}, qr/CREATE TRIGGER guest_links_write_guard /, '... the triggers');
like($fresh->{indexes}, qr/invites_invited_by_created_at_idx/, '... the indexes');
like($fresh->{views}, qr/^guest_joins: /m, '... and the views');

# -- 1.0 -> 1.0.1 -> 1.1, step by step ----------------------------------------
my %dbs = (
	stepwise => [ '1.0',   [ "ALTER EXTENSION $ext UPDATE TO '1.0.1'", "ALTER EXTENSION $ext UPDATE TO '1.1'" ] ],
	direct   => [ '1.0',   [ "ALTER EXTENSION $ext UPDATE TO '1.1'" ] ],
	from101  => [ '1.0.1', [ "ALTER EXTENSION $ext UPDATE TO '1.1'" ] ],
);
my %label = (
	stepwise => '1.0 -> 1.0.1 -> 1.1',
	direct   => '1.0 -> 1.1 (one ALTER EXTENSION UPDATE TO \'1.1\')',
	from101  => '1.0.1 -> 1.1',
);
for my $db (qw(stepwise direct from101))
{
	my ($start, $updates) = @{ $dbs{$db} };
	my $inv = live_site($db, $start);
	my $before = before_update($db);
	is(version($db), $start, "$db: at $start before the update");
	if ($db eq 'from101')
	{
		# the picture tells 1.0.1 from 1.1 in every part the update changes
		my $pre = catalog($node, $db);
		isnt($pre->{$_}, $fresh->{$_}, "$db at 1.0.1: $_ differ from a fresh 1.1")
		  for grep { $_ ne 'schema' } catalog_parts();
	}
	for my $u (@$updates)
	{
		my ($ret, $out, $err) = $node->psql($db, $u);
		is($ret, 0, "$db: $u") or diag($err);
		# the one-statement updates go straight to 1.1
		is(version($db), '1.1', "$db: $u goes straight to 1.1") if @$updates == 1;
	}
	check_updated($db, $inv, $before, $label{$db});
	compare_catalog($node, $db, $fresh, $label{$db}, 'a fresh 1.1');
}

# -- the carried grants survive pg_dump and restore ---------------------------
my $dump = $node->basedir . '/stepwise.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('stepwise') ],
	'pg_dump of the updated database');
# A dump names no extension version and its CREATE EXTENSION makes the
# default one (README, "Upgrading"): to restore at 1.1, the extension is
# created at 1.1 first, with its schema, and everything but the schema is
# restored (the dump's CREATE EXTENSION IF NOT EXISTS then changes nothing).
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->safe_psql('restored', "CREATE EXTENSION $ext VERSION '1.1' CASCADE");
my ($toc, $toc_err);
IPC::Run::run([ 'pg_restore', '-l', $dump ], '>', \$toc, '2>', \$toc_err)
  or die "pg_restore -l: $toc_err";
my $list = $node->basedir . '/stepwise.list';
open my $lf, '>', $list or die "$list: $!";
print $lf map { "$_\n" } grep { !/^\d+; \d+ \d+ SCHEMA - $ext / } split /\n/, $toc;
close $lf;
$node->command_ok([ 'pg_restore', '--exit-on-error', '-L', $list, '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a new database with the extension at 1.1');
is(version('restored'), '1.1', 'the restored database is at 1.1');
is( $node->safe_psql('restored', q{
		SELECT has_function_privilege('itm_app',
		           'invitetomedia.invite_create(text,text,text,text,text,text,boolean,timestamptz)', 'EXECUTE')
		       AND has_function_privilege('itm_app', 'invitetomedia.invite_check(text)', 'EXECUTE')}),
	't', 'the restored database keeps itm_app\'s grants on invite_create and invite_check');
compare_catalog($node, 'restored', $fresh, 'restored from the updated database', 'a fresh 1.1');

# -- pg_dump of the detached members equals a fresh install's ----------------
my $fresh_schema = detached_schema($node, 'fresh');
like($fresh_schema, qr/CREATE FUNCTION invitetomedia\.guest_link_join/,
	'a detached dump holds the extension objects');
like($fresh_schema, qr/GRANT ALL ON FUNCTION invitetomedia\.invite_create\(.*\) TO itm_app;/,
	'... and the DBA\'s grants');
for my $db (qw(stepwise direct from101))
{
	my $schema = detached_schema($node, $db);
	ok($schema eq $fresh_schema, "$label{$db}: pg_dump --schema-only of the members equals a fresh 1.1")
	  or diag(diff_text($fresh_schema, $schema));
}

# -- one session through 1.0, 1.0.1 and 1.1 -----------------------------------
live_site('session', '1.0');
is( $node->safe_psql('session', q{
		SELECT status FROM invitetomedia.invite_consume(
		    (SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'a@new.example', 'A', 'B')), 'a@new.example');
		ALTER EXTENSION invitetomedia UPDATE TO '1.0.1';
		SELECT status FROM invitetomedia.invite_consume(
		    (SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'b@new.example', 'A', 'B')), 'b@new.example');
		ALTER EXTENSION invitetomedia UPDATE TO '1.1';
		SELECT status FROM invitetomedia.invite_consume(
		    (SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'c@new.example', 'A', 'B')), 'c@new.example');
		SELECT token AS d FROM invitetomedia.invite_create('m1', 'owner', 'd@new.example', 'A', 'B') \\gset
		SELECT status || ' ' || (opens_at IS NULL) FROM invitetomedia.invite_check(:'d');
	}),
	"ok\nok\nok\nok true",
	'one session creates and consumes at 1.0, 1.0.1 and 1.1 (invite_check with opens_at)');

$node->stop;
done_testing();
