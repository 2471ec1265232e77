# The update to 1.1 (issue 10) on databases that hold live invites: a site
# at 1.0 (and one at 1.0.1) with invites in every state (unused, partly used
# multi-use, exhausted, revoked, expired, unlimited), redemptions of every
# kind, messages in the outbox and a DBA's grants to an application role on
# invite_create, invite_check and invite_consume, updated in place:
#  - 1.0 -> 1.0.1 -> 1.1 step by step, 1.0 -> 1.1 with one plain ALTER
#    EXTENSION ... UPDATE, and 1.0.1 -> 1.1;
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
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ext = 'invitetomedia';
my $node = PostgreSQL::Test::Cluster->new('update11');
$node->init;
$node->start;
my ($host, $port) = ($node->host, $node->port);

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
	is($q->(q{SELECT string_agg(p.oid::regprocedure::text, ' ' ORDER BY 1) FROM pg_proc p
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

# -- a catalog picture of the extension --------------------------------------
my %catalog_sql = (
	members => q{
		SELECT string_agg(pg_describe_object(classid, objid, 0), E'\n' ORDER BY 1)
		  FROM pg_depend
		 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'invitetomedia')},
	extension => q{
		SELECT concat_ws(' ', e.extversion, e.extrelocatable, e.extnamespace::regnamespace,
		       (SELECT string_agg(c::regclass || '=' || coalesce(w, ''), ',' ORDER BY c::regclass::text)
		          FROM unnest(e.extconfig, e.extcondition) AS u(c, w)))
		  FROM pg_extension e WHERE e.extname = 'invitetomedia'},
	schema => q{
		SELECT concat_ws(' ', n.nspname, n.nspowner::regrole,
		       (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(n.nspacl) x),
		       obj_description(n.oid, 'pg_namespace'))
		  FROM pg_namespace n WHERE n.nspname = 'invitetomedia'},
	relations => q{
		SELECT string_agg(concat_ws(' ', c.relname, c.relkind, c.relpersistence, c.reloptions,
		                  c.relrowsecurity, c.relforcerowsecurity, c.relowner::regrole,
		                  (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x),
		                  obj_description(c.oid, 'pg_class')), E'\n' ORDER BY c.relname)
		  FROM pg_class c WHERE c.relnamespace = 'invitetomedia'::regnamespace},
	columns => q{
		SELECT string_agg(line, E'\n' ORDER BY relname, pos)
		  FROM (SELECT c.relname, a.attnum AS pos,
		               concat_ws(' ', c.relname,
		                   row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
		                   format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
		                   a.attgenerated, a.attcollation::regcollation, a.attstattarget,
		                   pg_get_expr(d.adbin, d.adrelid),
		                   (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x),
		                   col_description(c.oid, a.attnum)) AS line
		          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
		         WHERE c.relnamespace = 'invitetomedia'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
		           AND a.attnum > 0 AND NOT a.attisdropped) cols},
	constraints => q{
		SELECT string_agg(concat_ws(' ', c.conrelid::regclass, c.conname, c.contype,
		                  pg_get_constraintdef(c.oid), c.condeferrable, c.convalidated,
		                  obj_description(c.oid, 'pg_constraint')), E'\n'
		                  ORDER BY c.conrelid::regclass::text, c.conname)
		  FROM pg_constraint c WHERE c.connamespace = 'invitetomedia'::regnamespace},
	indexes => q{
		SELECT string_agg(concat_ws(' ', pg_get_indexdef(i.indexrelid), i.indisunique, i.indisprimary,
		                  i.indimmediate), E'\n' ORDER BY 1)
		  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		 WHERE c.relnamespace = 'invitetomedia'::regnamespace},
	triggers => q{
		SELECT string_agg(concat_ws(' ', pg_get_triggerdef(t.oid), t.tgenabled), E'\n' ORDER BY 1)
		  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		 WHERE c.relnamespace = 'invitetomedia'::regnamespace AND NOT t.tgisinternal},
	policies => q{
		SELECT string_agg(concat_ws(' ', tablename, policyname, permissive, roles, cmd, qual, with_check),
		                  E'\n' ORDER BY tablename, policyname)
		  FROM pg_policies WHERE schemaname = 'invitetomedia'},
	functions => q{
		SELECT string_agg(concat_ws(' | ', p.oid::regprocedure, pg_get_function_arguments(p.oid),
		                  pg_get_function_result(p.oid), p.prokind, p.provolatile, p.proparallel,
		                  p.prosecdef, p.proisstrict, p.proleakproof, p.proretset, p.procost, p.prorows,
		                  p.proconfig, l.lanname, p.probin, p.prosrc, p.proowner::regrole,
		                  (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x),
		                  obj_description(p.oid, 'pg_proc')), E'\n' ORDER BY p.oid::regprocedure::text)
		  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
		 WHERE p.pronamespace = 'invitetomedia'::regnamespace},
	views => q{
		SELECT string_agg(c.relname || ': ' || pg_get_viewdef(c.oid), E'\n' ORDER BY c.relname)
		  FROM pg_class c WHERE c.relnamespace = 'invitetomedia'::regnamespace AND c.relkind IN ('v', 'm')},
	sequences => q{
		SELECT string_agg(concat_ws(' ', s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart,
		                  s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
		                  (SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
		                     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		                    WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
		                      AND d.deptype = 'a')), E'\n' ORDER BY s.seqrelid::regclass::text)
		  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
		 WHERE c.relnamespace = 'invitetomedia'::regnamespace},
	types => q{
		SELECT string_agg(t.typname || ' ' || t.typtype::text, E'\n' ORDER BY t.typname)
		  FROM pg_type t WHERE t.typnamespace = 'invitetomedia'::regnamespace},
	init_privs => q{
		SELECT string_agg(format('%s: %s %s', pg_describe_object(i.classoid, i.objoid, i.objsubid),
		                         i.privtype, i.initprivs), E'\n' ORDER BY 1)
		  FROM pg_init_privs i
		  JOIN pg_depend d ON d.classid = i.classoid AND d.objid = i.objoid AND d.objsubid = 0
		 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'invitetomedia')},
);

sub catalog
{
	my ($db) = @_;
	return { map { $_ => $node->safe_psql($db, $catalog_sql{$_}) } keys %catalog_sql };
}

sub compare_catalog
{
	my ($db, $fresh, $label) = @_;
	my $c = catalog($db);
	for my $k (sort keys %catalog_sql)
	{
		ok($c->{$k} eq $fresh->{$k}, "$label: $k as in a fresh 1.1")
		  or diag(diff_text($fresh->{$k}, $c->{$k}));
	}
	return;
}

# detaches every member so that pg_dump writes it out (see t/040_upgrade.pl)
sub detached_schema
{
	my ($db) = @_;
	my $sql = $node->safe_psql($db, qq{
		SELECT string_agg(format('ALTER EXTENSION $ext DROP %s %s;', upper(i.type), i.identity), E'\\n')
		  FROM pg_depend d, pg_identify_object(d.classid, d.objid, 0) i
		 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = '$ext')});
	$node->safe_psql($db, $sql);
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '-h', $host, '-p', $port, '--schema-only', $db ],
		'>', \$out, '2>', \$err)
	  or die "pg_dump $db failed: $err";
	$out =~ s/^--.*\n//mg;
	$out =~ s/^\\(?:un)?restrict .*\n//mg;
	return $out;
}

sub diff_text
{
	my ($a, $b) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir;
	open my $fa, '>', "$dir/fresh" or die;
	print $fa "$a\n";
	close $fa;
	open my $fb, '>', "$dir/updated" or die;
	print $fb "$b\n";
	close $fb;
	my ($out, $err);
	IPC::Run::run([ 'diff', '-u', "$dir/fresh", "$dir/updated" ], '>', \$out, '2>', \$err);
	my @l = split /\n/, $out // '';
	return join("\n", @l[ 0 .. ($#l < 80 ? $#l : 80) ]);
}

# -- a fresh 1.1 with the grants a DBA gives at 1.1 -------------------------
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', "CREATE EXTENSION $ext CASCADE" . ';' . app_grants('1.1'));
is(version('fresh'), '1.1', 'a fresh install is at 1.1');
my $fresh = catalog('fresh');
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
	direct   => [ '1.0',   [ "ALTER EXTENSION $ext UPDATE" ] ],
	from101  => [ '1.0.1', [ "ALTER EXTENSION $ext UPDATE" ] ],
);
my %label = (
	stepwise => '1.0 -> 1.0.1 -> 1.1',
	direct   => '1.0 -> 1.1 (one ALTER EXTENSION UPDATE)',
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
		my $pre = catalog($db);
		isnt($pre->{$_}, $fresh->{$_}, "$db at 1.0.1: $_ differ from a fresh 1.1")
		  for grep { $_ ne 'schema' } sort keys %catalog_sql;
	}
	for my $u (@$updates)
	{
		my ($ret, $out, $err) = $node->psql($db, $u);
		is($ret, 0, "$db: $u") or diag($err);
		# the one-statement updates go straight to 1.1
		is(version($db), '1.1', "$db: $u goes straight to 1.1") if $u !~ /TO/;
	}
	check_updated($db, $inv, $before, $label{$db});
	compare_catalog($db, $fresh, $label{$db});
}

# -- the carried grants survive pg_dump and restore ---------------------------
my $dump = $node->basedir . '/stepwise.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('stepwise') ],
	'pg_dump of the updated database');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a new database');
is( $node->safe_psql('restored', q{
		SELECT has_function_privilege('itm_app',
		           'invitetomedia.invite_create(text,text,text,text,text,text,boolean,timestamptz)', 'EXECUTE')
		       AND has_function_privilege('itm_app', 'invitetomedia.invite_check(text)', 'EXECUTE')}),
	't', 'the restored database keeps itm_app\'s grants on invite_create and invite_check');
compare_catalog('restored', $fresh, 'restored from the updated database');

# -- pg_dump of the detached members equals a fresh install's ----------------
my $fresh_schema = detached_schema('fresh');
like($fresh_schema, qr/CREATE FUNCTION invitetomedia\.guest_link_join/,
	'a detached dump holds the extension objects');
like($fresh_schema, qr/GRANT ALL ON FUNCTION invitetomedia\.invite_create\(.*\) TO itm_app;/,
	'... and the DBA\'s grants');
for my $db (qw(stepwise direct from101))
{
	my $schema = detached_schema($db);
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
