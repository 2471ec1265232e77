# The update to 1.1.1 (issue 18) on a database that holds live data of
# every kind made at 1.1: invites in every state (pending, used, exhausted,
# revoked, expired, unlimited, scheduled, locked, resent), redemptions of
# every kind, outbox messages (sent, dead, pending), retired tokens, guest
# links (open, one-click, revoked, expired) with joins of every kind, among
# them ok joins that made anonymous users as 1.1 did, and a DBA's grants to
# an application role (guest_link_join, invite_resend, invite_create,
# invite_check, invite_consume).  A copy of it stays at 1.1, served by the
# same library, and answers the same calls: "as before" is what the 1.1
# database answers.  After one ALTER EXTENSION invitetomedia UPDATE TO
# '1.1.1' (a plain UPDATE goes on to 2.0, the default since 2.0):
#  - the update names, in a NOTICE, the grant it carried over to the new
#    guest_link_join, and nothing else; the application role calls what it
#    was granted (guest_link_join included) and nothing more; the carried
#    grant is the DBA's (not in pg_init_privs) and survives dump and restore;
#  - every row of every table is as it was, and resends is empty;
#  - every old token answers invite_check and invite_consume as at 1.1, the
#    queued messages go out with their links;
#  - the guest links answer as at 1.1 but with user_id NULL and a join_id
#    (a device that joined at 1.1 rejoins as its 1.1 join); the anonymous
#    users 1.1 made are kept, and no join touches the users (a registered
#    address of a restricted domain is no longer let in: guest_allowed);
#  - invite_resend needs may_invite(): an inviter removed from the media is
#    refused (42501), where the 1.1 database still lets him; mailed resends
#    count towards settings.invites_per_hour (53400), for resends and
#    creates, where the 1.1 database does not count them;
#  - the database equals a fresh CREATE EXTENSION invitetomedia VERSION
#    '1.1.1' CASCADE given the same grants (t/lib/ItmCatalog.pm: member objects,
#    relations, columns, constraints, indexes, triggers, policies,
#    functions with their entry points, views, sequences, types, privileges
#    with pg_init_privs, and pg_dump --schema-only of the detached members),
#    before and after a dump and restore.
# Also: a 1.0 database with invites, updated all the way to 1.1.1 by one
# ALTER EXTENSION ... UPDATE TO '1.1.1', equals the fresh 1.1.1 too; and the library
# serves one session through 1.1 and 1.1.1 (a join answers user_id as 1.1
# did, then join_id after the update).
use strict;
use warnings FATAL => 'all';

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ItmCatalog qw(catalog catalog_parts compare_catalog detached_schema diff_text);

my $ext = 'invitetomedia';
my $node = PostgreSQL::Test::Cluster->new('update111');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE ROLE itm_app LOGIN');

# what a DBA grants the application at 1.1 and at 1.1.1 (the signatures
# are the same; README, "Security model", less the functions left out here
# so that "nothing more" can be checked)
my $app_grants = q{
	GRANT USAGE ON SCHEMA invitetomedia TO itm_app;
	GRANT EXECUTE ON FUNCTION
	    invitetomedia.invite_create(text, text, text, text, text, text, boolean, timestamptz),
	    invitetomedia.invite_check(text),
	    invitetomedia.invite_consume(text, text, text),
	    invitetomedia.invite_resend(bigint, text, boolean),
	    invitetomedia.guest_link_join(text, text, text, text, text)
	  TO itm_app;
};

my $carried_notice =
  'granted EXECUTE on function invitetomedia.guest_link_join(text,text,text,text,text) to itm_app as on its 1.1 form';

sub q_
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

sub version
{
	my ($db) = @_;
	return q_($db, "SELECT extversion FROM pg_extension WHERE extname = '$ext'");
}

# the SQLSTATE and message of a statement that must fail ('' if it did not)
sub error_of
{
	my ($db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return '' if $ret == 0;
	my ($line) = $err =~ /ERROR:\s+(\S.*)/;
	return $line // $err;
}

# runs an ALTER EXTENSION; returns (status, stderr, [the texts of its
# NOTICEs and WARNINGs])
sub alter
{
	my ($db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql);
	my @notices = $err =~ /(?:NOTICE|WARNING):\s+(.*)/g;
	return ($ret, $err, \@notices);
}

# every row of every table, as text (the update adds no column to an old one)
my @tables = qw(invites redemptions outbox retired_tokens guest_links guest_link_joins users
  media media_collaborators group_members allowed_users settings email_templates);

sub rows
{
	my ($db, $table) = @_;
	return q_($db, "SELECT count(*) || E'\\n' || coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')"
		  . " FROM invitetomedia.$table t");
}

sub all_rows
{
	my ($db) = @_;
	return { map { $_ => rows($db, $_) } @tables };
}

# the users, as one line each
sub users
{
	my ($db, $where) = @_;
	$where //= 'true';
	return q_($db, "SELECT string_agg(concat_ws(' ', user_id, email, first_name, last_name, role), E'\\n'"
		  . " ORDER BY user_id) FROM invitetomedia.users WHERE $where");
}

# ---------------------------------------------------------------------------
# a site at 1.1, with live data of every kind
# ---------------------------------------------------------------------------
# Returns { inv => { name => [invite_id, token, email] }, guest => { name =>
# [guest_link_id, token] }, resent_token => the token a 1.1 resend gave }.
sub site_1_1
{
	my ($db) = @_;
	q_('postgres', "CREATE DATABASE $db");
	q_($db, qq{
		CREATE EXTENSION $ext VERSION '1.1' CASCADE;
		INSERT INTO invitetomedia.email_templates VALUES
		  ('t', 'Invitation to {MEDIA_TITLE}', E'Hello {FIRST_NAME},\\nopen {URL}');
		UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 't',
		       link_base_url = 'https://media.example.com/join/';
		INSERT INTO invitetomedia.users VALUES
		  ('owner', 'owner\@site.example', 'Olga', 'Owner', 'admin'),
		  ('kim', 'kim\@site.example', 'Kim', 'Known', 'viewer'),
		  ('rob', 'rob\@blocked.example', 'Rob', 'Registered', 'viewer'),
		  ('ed', 'ed\@site.example', 'Ed', 'Editor', 'private_only'),
		  ('pub', 'pub\@site.example', 'Pia', 'Publisher', 'private_only');
		INSERT INTO invitetomedia.media VALUES ('m1', 'webcast', 'Launch', 'owner'),
		                                       ('m2', 'video', 'Film', 'owner');
		INSERT INTO invitetomedia.media_collaborators VALUES ('m1', 'ed', 'co_editor'),
		                                                     ('m2', 'pub', 'co_publisher');
	} . $app_grants);
	is(version($db), '1.1', "$db: created at 1.1");

	my (%inv, %guest);
	my $create = sub {
		my ($name, $media, $inviter, $reuse, $send, $not_before) = @_;
		my $email = "$name\@new.example";
		$email = 'kim@site.example' if $name eq 'unlimited';
		$not_before //= 'NULL';
		my $r = q_($db, qq{
			UPDATE invitetomedia.settings SET link_reusability = $reuse;
			SELECT invite_id || ' ' || token FROM invitetomedia.invite_create(
			    '$media', '$inviter', '$email', 'F$name', 'L$name', 'viewer', $send, $not_before)});
		$inv{$name} = [ split(/ /, $r), $email ];
	};
	my $consume = sub {
		my ($name, $email, $device) = @_;
		$device = defined $device ? "'$device'" : 'NULL';
		return q_($db,
			"SELECT status FROM invitetomedia.invite_consume('$inv{$name}[1]', '$email', $device)");
	};
	my $claim = q{SELECT message_id || ' ' || claim_no FROM invitetomedia.email_claim(10, '1 minute')};

	# a message that went out, and one that bounced for good
	$create->('partial', 'm1', 'owner', 3, 'true');
	my ($mid, $cno) = split / /, q_($db, $claim);
	is(q_($db, "SELECT invitetomedia.email_sent($mid, $cno)"), 't', "$db at 1.1: a message is sent");
	$create->('bounced', 'm2', 'owner', 1, 'true');
	($mid, $cno) = split / /, q_($db, $claim);
	q_($db, "SELECT invitetomedia.email_failed($mid, 'mailbox unavailable', $cno, true)");

	$create->('unused', 'm1', 'owner', 1, 'true');       # its message pending
	$create->('exhausted', 'm1', 'owner', 1, 'false');
	$create->('revoked', 'm2', 'owner', 2, 'true');       # its message dropped by the revoke
	$create->('expired', 'm2', 'owner', 1, 'false');
	$create->('unlimited', 'm2', 'owner', -1, 'false');
	$create->('scheduled', 'm1', 'owner', 1, 'false', "now() + interval '1 day'");
	$create->('locked', 'm1', 'owner', 1, 'false');
	$create->('resent', 'm1', 'owner', 1, 'true');
	$create->('edinv', 'm1', 'ed', 1, 'false');
	$create->('pubinv', 'm2', 'pub', 1, 'false');

	my @steps = (
		[ 'partial', 'partial@new.example', 'd1', 'ok' ],
		[ 'partial', 'partial@new.example', 'd1', 'rejoin' ],
		[ 'partial', 'wrong@new.example', undef, 'email_mismatch' ],
		[ 'exhausted', 'exhausted@new.example', undef, 'ok' ],
		[ 'exhausted', 'exhausted@new.example', undef, 'exhausted' ],
		[ 'unlimited', 'kim@site.example', 'k1', 'ok' ],
		[ 'unlimited', 'Kim@Site.example', 'k2', 'ok' ],
		[ 'unlimited', 'kim@site.example', 'k1', 'rejoin' ],
		[ 'scheduled', 'scheduled@new.example', undef, 'not_yet' ],
		(map { [ 'locked', "guess$_\@new.example", undef, 'email_mismatch' ] } 1 .. 5),
		[ 'locked', 'locked@new.example', undef, 'locked' ],
	);
	for my $s (@steps)
	{
		is($consume->($s->[0], $s->[1], $s->[2]), $s->[3], "$db at 1.1: $s->[0] answers $s->[3]");
	}
	is(q_($db, "SELECT invitetomedia.invite_revoke($inv{revoked}[0], 'owner')"), 't', "$db at 1.1: revoked");
	is($consume->('revoked', 'revoked@new.example'), 'revoked', "$db at 1.1: revoked answers revoked");
	q_($db, qq{
		UPDATE invitetomedia.invites SET expires_at = now() - interval '1 hour',
		       created_at = now() - interval '2 days'
		 WHERE invite_id = $inv{expired}[0]});
	is($consume->('expired', 'expired@new.example'), 'expired', "$db at 1.1: expired answers expired");

	# a resend at 1.1: a new token, the old one retired, the message queued again
	my $resent_token = q_($db, "SELECT token FROM invitetomedia.invite_resend($inv{resent}[0], 'owner', true)");
	like($resent_token, qr/^itm_/, "$db at 1.1: an invite is resent with a new token");
	is($consume->('resent', 'resent@new.example'), 'revoked', "$db at 1.1: its old token answers revoked");

	is( q_($db, q{SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM invitetomedia.redemptions}),
		'email_mismatch,exhausted,expired,locked,not_yet,ok,rejoin,revoked',
		"$db at 1.1: redemptions of every kind");
	is( q_($db, q{
		SELECT string_agg(format('%s %s', to_email, CASE WHEN sent_at IS NOT NULL THEN 'sent'
		                                                 WHEN dead_at IS NOT NULL THEN 'dead'
		                                                 ELSE 'pending' END), ', ' ORDER BY message_id)
		  FROM invitetomedia.outbox}),
		'partial@new.example sent, bounced@new.example dead, unused@new.example pending, resent@new.example pending',
		"$db at 1.1: outbox messages sent, dead and pending");
	is(q_($db, "SELECT count(*) FROM invitetomedia.retired_tokens WHERE invite_id = $inv{resent}[0]"),
		'1', "$db at 1.1: a retired token");

	# guest links, and joins of every kind
	my $glink = sub {
		my ($name, $media, $limit, $days) = @_;
		$limit //= 'NULL';
		$days //= 'NULL';
		my $r = q_($db, qq{SELECT guest_link_id || ' ' || token FROM
		                    invitetomedia.guest_link_create('$media', 'owner', '$name', $limit, $days)});
		$guest{$name} = [ split / /, $r ];
	};
	my $gjoin = sub {
		my ($name, $email, $device) = @_;
		$device = defined $device ? "'$device'" : 'NULL';
		return q_($db, "SELECT concat_ws('|', status, user_id) FROM invitetomedia.guest_link_join("
			  . "'$guest{$name}[1]', '$email', 'G', 'Uest', $device)");
	};
	$glink->('open', 'm1');
	$glink->('one', 'm1', 1);
	$glink->('gone', 'm2');
	$glink->('old', 'm2', undef, 1);
	like($gjoin->('open', 'anon1@guest.example'), qr/^ok\|.+/, "$db at 1.1: a guest joins and is made a user");
	like($gjoin->('open', 'Anon2@Guest.example', 'gd2'), qr/^ok\|.+/, "$db at 1.1: a guest joins from a device");
	like($gjoin->('open', 'anon2@guest.example', 'gd2'), qr/^rejoin\|.+/, "$db at 1.1: ... and rejoins");
	is($gjoin->('open', 'kim@site.example', 'kd'), 'ok|kim', "$db at 1.1: a registered address joins as its user");
	q_($db, q{UPDATE invitetomedia.settings SET restrict_new_user_domains = '{blocked.example}'});
	is($gjoin->('open', 'rob@blocked.example'), 'ok|rob',
		"$db at 1.1: a registered address of a restricted domain joins");
	is($gjoin->('open', 'x@blocked.example'), 'domain_restricted',
		"$db at 1.1: another address of that domain is domain_restricted");
	like($gjoin->('one', 'anon3@guest.example'), qr/^ok\|.+/, "$db at 1.1: the one-click link is taken");
	is($gjoin->('one', 'late@guest.example'), 'exhausted', "$db at 1.1: ... then exhausted");
	is(q_($db, "SELECT invitetomedia.guest_link_revoke($guest{gone}[0], 'owner')"), 't',
		"$db at 1.1: a guest link revoked");
	is($gjoin->('gone', 'anon1@guest.example'), 'revoked', "$db at 1.1: ... answers revoked");
	q_($db, "UPDATE invitetomedia.guest_links SET expires_at = now() - interval '1 hour'"
		  . " WHERE guest_link_id = $guest{old}[0]");
	is($gjoin->('old', 'anon1@guest.example'), 'expired', "$db at 1.1: an expired guest link answers expired");
	is( q_($db, q{SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM invitetomedia.guest_link_joins}),
		'domain_restricted,exhausted,expired,ok,rejoin,revoked', "$db at 1.1: guest joins of every kind");
	is( users($db, "role = 'anonymous' AND email ILIKE '%\@guest.example'"),
		join("\n", 'anon1@guest.example anon1@guest.example G Uest anonymous',
			'anon2@guest.example Anon2@Guest.example G Uest anonymous',
			'anon3@guest.example anon3@guest.example G Uest anonymous'),
		"$db at 1.1: the ok joins of new addresses made anonymous users");

	return { inv => \%inv, guest => \%guest, resent_token => $resent_token };
}

# ---------------------------------------------------------------------------
# the fresh 1.1.1, with the same grants
# ---------------------------------------------------------------------------
q_('postgres', 'CREATE DATABASE fresh');
q_('fresh', "CREATE EXTENSION $ext VERSION '1.1.1' CASCADE;" . $app_grants);
is(version('fresh'), '1.1.1', 'a fresh install is at 1.1.1');
my $fresh = catalog($node, 'fresh');
like($fresh->{functions}, qr/^invitetomedia\.guest_link_join\(.*\| guest_link_join_1_1_1 \|.*\bitm_app=X\//m,
	'the catalog picture holds the 1.1.1 guest_link_join, its entry point and its grant');
like($fresh->{functions}, qr/^invitetomedia\.guest_allowed\(text\) /m, '... guest_allowed');
like($fresh->{columns}, qr/^resends 5 emailed boolean /m, '... the resends table');
like($fresh->{init_privs}, qr/^table invitetomedia\.resends: /m, '... and its initial privileges');

# ---------------------------------------------------------------------------
# 1.1 -> 1.1.1 with one ALTER EXTENSION UPDATE TO '1.1.1'
# ---------------------------------------------------------------------------
my $site = site_1_1('live');
my %inv = %{ $site->{inv} };
my %guest = %{ $site->{guest} };
my %id = map { $_ => $inv{$_}[0] } keys %inv;
my %tok = map { $_ => $inv{$_}[1] } keys %inv;
$tok{resent_new} = $site->{resent_token};

my $before = all_rows('live');
my $max_join = q_('live', 'SELECT max(join_id) FROM invitetomedia.guest_link_joins');
my $gd2_join = q_('live', q{SELECT join_id FROM invitetomedia.guest_link_joins WHERE device_id = 'gd2' AND status = 'ok'});

# the picture tells 1.1 from 1.1.1 in every part the update changes
{
	my $pre = catalog($node, 'live');
	isnt($pre->{$_}, $fresh->{$_}, "live at 1.1: $_ differ from a fresh 1.1.1")
	  for qw(members extension relations columns constraints indexes functions sequences types init_privs);
}

# the copy that stays at 1.1: what "as before" means
q_('postgres', 'CREATE DATABASE live11 TEMPLATE live');

my ($ret, $err, $notices) = alter('live', "ALTER EXTENSION $ext UPDATE TO '1.1.1'");
is($ret, 0, 'ALTER EXTENSION invitetomedia UPDATE TO \'1.1.1\' on the 1.1 database') or diag($err);
is(version('live'), '1.1.1', '... goes to 1.1.1');
# README, "Upgrading": "a NOTICE names each" grant carried over.  PostgreSQL
# runs an extension script with client_min_messages and log_min_messages at
# WARNING at least (execute_extension_script), so a RAISE NOTICE in it
# reaches neither the client nor the server log: only a WARNING is seen.
is(join("\n", @$notices), $carried_notice,
	'... naming the grant carried over to the new guest_link_join, and nothing else')
  or diag('what the update printed: ' . ($err eq '' ? '(nothing)' : $err)
	  . "\n(a RAISE NOTICE in an extension script is never sent: PostgreSQL runs the script"
	  . ' with client_min_messages and log_min_messages at WARNING at least)');
is(version('live11'), '1.1', 'the copy is still at 1.1');

# -- the data as it was ---------------------------------------------------------
my $after = all_rows('live');
is($after->{$_}, $before->{$_}, "update: $_ unchanged") for @tables;
is(rows('live', 'resends'), "0\n", 'update: resends is empty');
is( q_('live', q{SELECT string_agg(invite_id || ' ' || state, ', ' ORDER BY invite_id) FROM invitetomedia.invite_status}),
	join(', ', map { "$id{$_->[0]} $_->[1]" } sort { $id{ $a->[0] } <=> $id{ $b->[0] } }
		  ([ 'partial', 'used' ], [ 'bounced', 'pending' ], [ 'unused', 'pending' ],
		   [ 'exhausted', 'exhausted' ], [ 'revoked', 'revoked' ], [ 'expired', 'expired' ],
		   [ 'unlimited', 'used' ], [ 'scheduled', 'not_yet' ], [ 'locked', 'locked' ],
		   [ 'resent', 'pending' ], [ 'edinv', 'pending' ], [ 'pubinv', 'pending' ])),
	'update: invite_status: every state as at 1.1');

# -- every old token answers invite_check as before -------------------------------
my $check = sub {
	my ($db, $t) = @_;
	return q_($db, "SELECT c.status || ' ' || c::text FROM invitetomedia.invite_check('$t') c");
};
for my $name (sort keys %tok)
{
	is($check->('live', $tok{$name}), $check->('live11', $tok{$name}),
		"invite_check($name) answers as at 1.1: " . (split / /, $check->('live11', $tok{$name}))[0]);
}

# -- the guest links: as at 1.1, but no user, and a join_id ------------------------
sub gjoin
{
	my ($db, $name, $email, $device) = @_;
	$device = defined $device ? "'$device'" : 'NULL';
	my $json = q_($db, "SELECT row_to_json(j) FROM invitetomedia.guest_link_join("
		  . "'$guest{$name}[1]', '$email', 'New', 'Guest', $device) j");
	return decode_json($json);
}

sub same_part
{
	my ($j) = @_;
	return join('|', map { $j->{$_} // '' } qw(status guest_link_id media_id role clicks_left expires_at));
}

my $users_before = users('live');
my @joins = (
	[ 'open', 'new1@guest.example', undef, 'ok', 'a new address' ],
	[ 'open', 'anon2@guest.example', 'gd2', 'rejoin', 'a device that joined at 1.1' ],
	[ 'open', 'anon1@guest.example', 'nd', 'ok', 'the address of an anonymous user 1.1 made' ],
	[ 'open', 'KIM@site.example', undef, 'ok', 'a registered address' ],
	[ 'one', 'new2@guest.example', undef, 'exhausted', 'the one-click link taken at 1.1' ],
	[ 'gone', 'new3@guest.example', undef, 'revoked', 'the revoked link' ],
	[ 'old', 'new4@guest.example', undef, 'expired', 'the expired link' ],
);
for my $s (@joins)
{
	my ($name, $email, $device, $status, $what) = @$s;
	my $old = gjoin('live11', $name, $email, $device);
	my $new = gjoin('live', $name, $email, $device);
	is(same_part($new), same_part($old), "guest link $name, $what: answers $status as at 1.1");
	is($new->{status}, $status, "... $status");
	next unless $status eq 'ok' || $status eq 'rejoin';
	ok(defined $old->{user_id} && !exists $old->{join_id}, "... at 1.1 with a user_id ($old->{user_id}), no join_id");
	ok(exists $new->{user_id} && !defined $new->{user_id}, '... at 1.1.1 with user_id NULL');
	if ($status eq 'rejoin')
	{
		is($new->{join_id}, $gd2_join, '... and the join_id of its ok join at 1.1');
	}
	else
	{
		like($new->{join_id} // '', qr/^\d+$/, '... and a join_id');
		is( q_('live', "SELECT concat_ws('|', status, email, user_id IS NULL, join_id > $max_join)"
				  . " FROM invitetomedia.guest_link_joins WHERE join_id = " . ($new->{join_id} // 0)),
			"ok|$email|t|t", '... the record of this join: the address typed, no user');
	}
}
# the rule for a guest's address: the domain, whoever has it
{
	my $old = gjoin('live11', 'open', 'rob@blocked.example');
	my $new = gjoin('live', 'open', 'rob@blocked.example');
	is("$old->{status} $new->{status}", 'ok domain_restricted',
		'a registered address of a restricted domain: let in at 1.1, domain_restricted at 1.1.1 (guest_allowed)');
}
is(users('live'), $users_before, 'no guest join touched the users: the anonymous users 1.1 made are kept as they were');
is( q_('live', "SELECT count(*) FROM invitetomedia.users WHERE role = 'anonymous' AND email ILIKE '%\@guest.example'"),
	'3', '... all three of them');
is( q_('live', "SELECT count(*) || ' ' || count(user_id) FROM invitetomedia.guest_link_joins WHERE join_id > $max_join"),
	'8 0', 'every join since the update is recorded, with no user');
is( q_('live', "SELECT string_agg(g::text, E'\\n' ORDER BY join_id) FROM invitetomedia.guest_link_joins g"
		  . " WHERE join_id <= $max_join"),
	q_('live11', "SELECT string_agg(g::text, E'\\n' ORDER BY join_id) FROM invitetomedia.guest_link_joins g"
		  . " WHERE join_id <= $max_join"),
	'the joins recorded at 1.1 keep their users');
isnt(users('live11'), $users_before, '(the copy at 1.1 made users for the same joins)');

# -- every old token answers invite_consume as before -------------------------------
my @uses = (
	[ 'partial', 'partial@new.example', 'd1' ],
	[ 'partial', 'other@new.example' ],
	[ 'partial', 'PARTIAL@new.example', 'd2' ],
	[ 'unused', 'unused@new.example' ],
	[ 'unused', 'unused@new.example' ],
	[ 'exhausted', 'exhausted@new.example' ],
	[ 'revoked', 'revoked@new.example' ],
	[ 'expired', 'expired@new.example' ],
	[ 'unlimited', 'kim@site.example', 'k1' ],
	[ 'unlimited', 'kim@site.example', 'k3' ],
	[ 'scheduled', 'scheduled@new.example' ],
	[ 'locked', 'locked@new.example' ],
	[ 'resent', 'resent@new.example' ],
	[ 'resent_new', 'resent@new.example' ],
	[ 'bounced', 'bounced@new.example' ],
);
for my $u (@uses)
{
	my ($name, $email, $device) = @$u;
	my $sql = "SELECT c.status || ' ' || c::text FROM invitetomedia.invite_consume('$tok{$name}', '$email', "
	  . (defined $device ? "'$device'" : 'NULL') . ') c';
	my $old = q_('live11', $sql);
	my $new = q_('live', $sql);
	is($new, $old, "invite_consume($name, $email" . (defined $device ? ", $device" : '') . ') answers as at 1.1: '
		  . (split / /, $old)[0]);
}

# the messages queued at 1.1 go out, with their links
{
	my @m = split /\n/, q_('live', q{
		SELECT message_id || ' ' || claim_no || ' ' || to_email || ' ' || replace(body, E'\n', ' ')
		  FROM invitetomedia.email_claim(10, '1 minute') ORDER BY message_id});
	is(join(', ', map { (split / /)[2] } @m), 'unused@new.example, resent@new.example',
		'the pending messages are claimed');
	like($m[0] // '', qr/\Q$tok{unused}\E/, '... the first with its link');
	like($m[1] // '', qr/\Q$tok{resent_new}\E/, '... the resent one with the new link');
	unlike($m[1] // '', qr/\Q$tok{resent}\E/, '... not the retired one');
	my ($mid, $cno) = split / /, $m[0] // '0 0';
	is(q_('live', "SELECT invitetomedia.email_sent($mid, $cno)"), 't', '... and are sent');
}

# -- the application role -------------------------------------------------------
is( q_('live', q{
		SELECT string_agg(p.oid::regprocedure::text || '=' || has_function_privilege('itm_app', p.oid, 'EXECUTE'),
		                  E'\n' ORDER BY p.oid::regprocedure::text)
		  FROM pg_proc p WHERE p.pronamespace = 'invitetomedia'::regnamespace
		   AND p.proname IN ('invite_create', 'invite_check', 'invite_consume', 'invite_resend', 'invite_revoke',
		                     'invite_revoke_all', 'invite_purge', 'guest_link_create', 'guest_link_join',
		                     'guest_link_revoke', 'guest_allowed', 'email_claim')}),
	join("\n",
		'invitetomedia.email_claim(integer,interval)=false',
		'invitetomedia.guest_allowed(text)=false',
		'invitetomedia.guest_link_create(text,text,text,integer,integer)=false',
		'invitetomedia.guest_link_join(text,text,text,text,text)=true',
		'invitetomedia.guest_link_revoke(bigint,text)=false',
		'invitetomedia.invite_check(text)=true',
		'invitetomedia.invite_consume(text,text,text)=true',
		'invitetomedia.invite_create(text,text,text,text,text,text,boolean,timestamp with time zone)=true',
		'invitetomedia.invite_purge(interval)=false',
		'invitetomedia.invite_resend(bigint,text,boolean)=true',
		'invitetomedia.invite_revoke(bigint,text)=false',
		'invitetomedia.invite_revoke_all(text,text)=false'),
	'itm_app may call what it was granted, the new guest_link_join included, and nothing else');
is( q_('live', q{SELECT has_table_privilege('itm_app', 'invitetomedia.resends', 'SELECT')
                     OR has_table_privilege('itm_app', 'invitetomedia.guest_link_joins', 'SELECT')}),
	'f', 'itm_app reads neither resends nor the join records');
is( q_('live', qq{SET ROLE itm_app;
		SELECT concat_ws('|', status, user_id IS NULL, join_id IS NOT NULL)
		  FROM invitetomedia.guest_link_join('$guest{open}[1]', 'app\@guest.example', 'A', 'Pp')}),
	'ok|t|t', 'itm_app calls guest_link_join: ok, no user, a join_id');
like(error_of('live', q{SET ROLE itm_app; SELECT invitetomedia.guest_allowed('a@guest.example')}),
	qr/^42501: permission denied for function guest_allowed/, 'itm_app may not call guest_allowed');
is( q_('live', qq{SET ROLE itm_app;
		SELECT count(*) FROM invitetomedia.invite_resend($id{scheduled}, 'owner', false)}),
	'1', 'itm_app calls invite_resend');
is( q_('live', q{SELECT count(*) FROM pg_init_privs i, aclexplode(i.initprivs) a
                  WHERE i.classoid = 'pg_proc'::regclass AND a.grantee = 'itm_app'::regrole}),
	'0', 'the carried grant is the DBA\'s (not in pg_init_privs: pg_dump keeps it)');

# -- invite_resend needs may_invite() -------------------------------------------
is(q_('live', "SELECT count(*) FROM invitetomedia.invite_resend($id{edinv}, 'ed', false)"),
	'1', 'a co-editor resends his invite while he may invite to the media');
q_($_, q{DELETE FROM invitetomedia.media_collaborators WHERE media_id = 'm1' AND user_id = 'ed'})
  for qw(live live11);
my $resends = rows('live', 'resends');
my $retired = rows('live', 'retired_tokens');
like(error_of('live', "SELECT * FROM invitetomedia.invite_resend($id{edinv}, 'ed', true)"),
	qr/^42501: user "ed" may not resend invite $id{edinv}: they may not invite to media "m1" now/,
	'removed from the media, he may no longer resend it (42501)');
is(rows('live', 'resends') . rows('live', 'retired_tokens'), $resends . $retired,
	'... and the refusal changed nothing');
is(q_('live11', "SELECT count(*) FROM invitetomedia.invite_resend($id{edinv}, 'ed', true)"),
	'1', 'the database still at 1.1 lets him (1.1\'s rule, its entry point)');
is(q_('live', "SELECT invitetomedia.invite_revoke($id{edinv}, 'ed')"), 't', 'revoking it stays allowed');

# -- mailed resends count towards settings.invites_per_hour ---------------------
# pub created one invite this hour, at 1.1: one mailed resend fits under 2
q_($_, 'UPDATE invitetomedia.settings SET invites_per_hour = 2') for qw(live live11);
is(q_('live', "SELECT count(*) FROM invitetomedia.invite_resend($id{pubinv}, 'pub', true)"),
	'1', 'invites_per_hour 2: a mailed resend after one create');
like(error_of('live', "SELECT * FROM invitetomedia.invite_resend($id{pubinv}, 'pub', true)"),
	qr/^53400: user "pub" has reached the limit of 2 new links per hour/,
	'... a second mailed resend is over the limit (53400)');
is(q_('live', "SELECT count(*) FROM invitetomedia.invite_resend($id{pubinv}, 'pub', false)"),
	'1', '... one that mails nothing is not limited');
like(error_of('live', q{SELECT * FROM invitetomedia.invite_create('m2', 'pub', 'more@new.example', 'M', 'Ore')}),
	qr/^53400: user "pub" has reached the limit of 2 new links per hour/,
	'... and the mailed resend counts for a create too (53400)');
like(error_of('live', q{SELECT * FROM invitetomedia.guest_link_create('m2', 'pub', 'More')}),
	qr/^53400: /, '... and for a guest link (53400)');
is( q_('live', q{SELECT string_agg(concat_ws(' ', invite_id, actor_id, emailed), ', ' ORDER BY resend_id)
                   FROM invitetomedia.resends}),
	"$id{scheduled} owner f, $id{edinv} ed f, $id{pubinv} pub t, $id{pubinv} pub f",
	'every resend since the update is recorded, refusals not');
is( q_('live11', "SELECT (SELECT count(*) FROM invitetomedia.invite_resend($id{pubinv}, 'pub', true))"
		  . " + (SELECT count(*) FROM invitetomedia.invite_resend($id{pubinv}, 'pub', true))"),
	'2', 'the database still at 1.1 counts no resend (1.1\'s rule)');
q_($_, 'UPDATE invitetomedia.settings SET invites_per_hour = 0') for qw(live live11);

# -- equal to a fresh 1.1.1 ---------------------------------------------------------
compare_catalog($node, 'live', $fresh, '1.1 -> 1.1.1', 'a fresh 1.1.1');

# a dump restored at 1.1.1: a dump names no version, and CREATE EXTENSION
# without one makes 2.0 (the default) now.  As in t/045, the DBA creates
# the extension at 1.1.1 first (with its schema) and restores everything
# but the schema; the dump's CREATE EXTENSION IF NOT EXISTS then changes
# nothing
my $dump = $node->basedir . '/live.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('live') ],
	'pg_dump of the updated database');
q_('postgres', 'CREATE DATABASE restored');
q_('restored', "CREATE EXTENSION $ext VERSION '1.1.1' CASCADE");
my ($toc, $toc_err);
IPC::Run::run([ 'pg_restore', '-l', $dump ], '>', \$toc, '2>', \$toc_err)
  or die "pg_restore -l: $toc_err";
my @entries = split /\n/, $toc;
is(scalar(grep { /^\d+; \d+ \d+ SCHEMA - invitetomedia / } @entries), 1, 'the dump creates the schema once');
my $list = $node->basedir . '/live.list';
open my $lf, '>', $list or die "$list: $!";
print $lf map { "$_\n" } grep { !/^\d+; \d+ \d+ SCHEMA - invitetomedia / } @entries;
close $lf;
$node->command_ok([ 'pg_restore', '--exit-on-error', '-L', $list, '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a new database with the extension at 1.1.1');
is(version('restored'), '1.1.1', 'the restored database is at 1.1.1');
is( q_('restored', q{SELECT has_function_privilege('itm_app',
                        'invitetomedia.guest_link_join(text,text,text,text,text)', 'EXECUTE')}),
	't', 'the restored database keeps itm_app\'s carried grant on guest_link_join');
is(rows('restored', 'resends') . rows('restored', 'guest_link_joins'),
	rows('live', 'resends') . rows('live', 'guest_link_joins'), '... the resends and the join records');
compare_catalog($node, 'restored', $fresh, 'restored from the updated database', 'a fresh 1.1.1');

# ---------------------------------------------------------------------------
# 1.0 -> 1.0.1 -> 1.1 -> 1.1.1 with one ALTER EXTENSION UPDATE TO '1.1.1'
# ---------------------------------------------------------------------------
q_('postgres', 'CREATE DATABASE from10');
my ($t10a, $t10b) = split /\n/, q_('from10', q{
	CREATE EXTENSION invitetomedia VERSION '1.0' CASCADE;
	INSERT INTO invitetomedia.email_templates VALUES ('t', 'Invitation', 'Open {URL}');
	UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 't',
	       link_base_url = 'https://media.example.com/join/';
	INSERT INTO invitetomedia.users VALUES ('owner', 'owner@site.example', 'Olga', 'Owner', 'admin');
	INSERT INTO invitetomedia.media VALUES ('m1', 'webcast', 'Launch', 'owner');
	GRANT USAGE ON SCHEMA invitetomedia TO itm_app;
	GRANT EXECUTE ON FUNCTION invitetomedia.invite_create(text, text, text, text, text, text, boolean),
	    invitetomedia.invite_check(text), invitetomedia.invite_consume(text, text, text) TO itm_app;
	SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'a@new.example', 'A', 'A', 'viewer', true);
	SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'b@new.example', 'B', 'B');
});
is(q_('from10', "SELECT status FROM invitetomedia.invite_consume('$t10a', 'a\@new.example', 'd1')"),
	'ok', '1.0: a link used');
is(version('from10'), '1.0', 'from10 is at 1.0');
($ret, $err, $notices) = alter('from10', "ALTER EXTENSION $ext UPDATE TO '1.1.1'");
is($ret, 0, '1.0: one ALTER EXTENSION invitetomedia UPDATE TO \'1.1.1\'') or diag($err);
is(version('from10'), '1.1.1', '... goes all the way to 1.1.1');
is( q_('from10', q{SELECT string_agg(p.oid::regprocedure::text || '=' || has_function_privilege('itm_app', p.oid, 'EXECUTE'),
                                     E'\n' ORDER BY p.oid::regprocedure::text)
                     FROM pg_proc p WHERE p.pronamespace = 'invitetomedia'::regnamespace
                      AND p.proname IN ('invite_create', 'invite_check', 'invite_consume', 'invite_resend',
                                        'guest_link_join')}),
	join("\n",
		'invitetomedia.guest_link_join(text,text,text,text,text)=false',
		'invitetomedia.invite_check(text)=true',
		'invitetomedia.invite_consume(text,text,text)=true',
		'invitetomedia.invite_create(text,text,text,text,text,text,boolean,timestamp with time zone)=true',
		'invitetomedia.invite_resend(bigint,text,boolean)=false'),
	'... carrying the 1.0 grants on invite_create, invite_check and invite_consume over, and no more');
is(q_('from10', "SELECT status FROM invitetomedia.invite_consume('$t10a', 'a\@new.example', 'd1')"),
	'rejoin', '1.0 -> 1.1.1: the used link answers rejoin to its device');
is(q_('from10', "SELECT status FROM invitetomedia.invite_consume('$t10b', 'b\@new.example')"),
	'ok', '1.0 -> 1.1.1: the unused link works');
is(q_('from10', q{SELECT count(*) FROM invitetomedia.email_claim(10, '1 minute')}),
	'1', '1.0 -> 1.1.1: the message queued at 1.0 is due');
# the functions newer than 1.0 are granted to no one: the DBA grants them
q_('from10', q{GRANT EXECUTE ON FUNCTION invitetomedia.invite_resend(bigint, text, boolean),
                   invitetomedia.guest_link_join(text, text, text, text, text) TO itm_app});
compare_catalog($node, 'from10', $fresh, '1.0 -> 1.1.1', 'a fresh 1.1.1');

# -- pg_dump of the detached members equals a fresh install's ----------------
my $fresh_schema = detached_schema($node, 'fresh');
like($fresh_schema, qr/CREATE TABLE invitetomedia\.resends /, 'a detached dump holds the extension objects');
like($fresh_schema, qr/GRANT ALL ON FUNCTION invitetomedia\.guest_link_join\(.*\) TO itm_app;/,
	'... and the DBA\'s grants');
for my $db ([ 'live', '1.1 -> 1.1.1' ], [ 'from10', '1.0 -> 1.1.1' ])
{
	my $schema = detached_schema($node, $db->[0]);
	ok($schema eq $fresh_schema, "$db->[1]: pg_dump --schema-only of the members equals a fresh 1.1.1")
	  or diag(diff_text($fresh_schema, $schema));
}

# ---------------------------------------------------------------------------
# one session through 1.1 and 1.1.1
# ---------------------------------------------------------------------------
# a copy of the database still at 1.1 (its co-editor ed already removed
# from m1, the invite he made still open)
q_('postgres', 'CREATE DATABASE session TEMPLATE live11');
is(version('session'), '1.1', 'the session\'s database is at 1.1');
is( q_('session', qq{
		SET client_min_messages = warning;
		CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS \$\$
		BEGIN
		    EXECUTE sql;
		    RETURN 'ok';
		EXCEPTION WHEN OTHERS THEN
		    RETURN SQLSTATE;
		END
		\$\$;
		SELECT count(*) AS users FROM invitetomedia.users \\gset
		SELECT concat_ws('|', status, user_id) FROM invitetomedia.guest_link_join(
		    '$guest{open}[1]', 'one\@guest.example', 'O', 'Ne');
		SELECT pg_temp.try('SELECT * FROM invitetomedia.invite_resend($id{edinv}, ''ed'', false)');
		SELECT count(*) - :users FROM invitetomedia.users;
		ALTER EXTENSION invitetomedia UPDATE TO '1.1.1';
		SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia';
		SELECT count(*) AS users FROM invitetomedia.users \\gset
		SELECT status, user_id IS NULL AS no_user, join_id
		  FROM invitetomedia.guest_link_join('$guest{open}[1]', 'two\@guest.example', 'T', 'Wo') \\gset
		SELECT concat_ws('|', :'status', :'no_user',
		                 (SELECT email FROM invitetomedia.guest_link_joins WHERE join_id = :join_id));
		SELECT pg_temp.try('SELECT * FROM invitetomedia.invite_resend($id{edinv}, ''ed'', false)');
		SELECT count(*) - :users FROM invitetomedia.users;
	}),
	join("\n", 'ok|one@guest.example', 'ok', '1', '1.1.1', 'ok|t|two@guest.example', '42501', '0'),
	'one session: at 1.1 a join makes a user and answers its user_id, a former co-editor resends; '
	  . 'updated, a join answers no user and its join_id, and the resend is refused');

$node->stop;
done_testing();
