# Version 2.0's schema (issue 22; docs/design-2.0.md, sections 1 to 5 and
# 9): invitetomedia--1.1.1--2.0.sql, installed explicitly (VERSION '2.0')
# while default_version is still 1.1.1.  The C API is not called here (its
# 2.0 port is t/121_v2_api.pl's); everything below is SQL, as the owner or
# as roles with direct grants.
#
#  (a) a fresh CREATE EXTENSION ... VERSION '2.0' and databases created at
#      1.0, 1.0.1, 1.1 and 1.1.1 then updated to 2.0 have equal catalogs
#      (t/lib/ItmCatalog.pm: members, relations, columns, constraints,
#      indexes, triggers, policies, functions, views, sequences, types,
#      privileges with pg_init_privs, the pg_extension row; and pg_dump
#      --schema-only of the detached members), and the same configuration
#      rows; the dropped sequences and settings table are off extconfig;
#      default privileges of the installing role are revoked as a fresh
#      install revokes them;
#  (b) 1.x data made at 1.1.1 (settings, templates, allowed users, the
#      directory, invites, redemptions, outbox, retired tokens, resends,
#      guest links and joins) lands in tenant 1 / site 'default' with every
#      row and id as it was; settings is a view of that site, updatable as
#      1.x's table was; a DBA's grant on the settings table is carried to
#      the view;
#  (c) row-level security: two more tenants with rows in every table; a
#      role mapped to each (tenant_roles) with SELECT, INSERT, UPDATE and
#      DELETE on every table sees, updates and deletes its tenant's rows
#      only and cannot insert a row of another tenant; invites and guest
#      links keep their 1.x read policy, ANDed with the tenant's; a role
#      mapped to no tenant sees the default tenant's rows only, and nothing
#      once no tenant is the default; the views and settings keep to the
#      caller's tenant; the SQL functions (may_invite_at, domain_allowed_at,
#      guest_allowed_at, email_claim, email_claim_sites, email_sent) act on
#      the caller's tenant only;
#  (d) the admin functions: their happy paths and every refusal, by
#      SQLSTATE; tenant_drop deletes exactly the tenant's rows, counts them
#      per table, and deletes nothing when it fails part way;
#  (e) pg_dump / pg_restore of a 2.0 database with three tenants keeps
#      every row of every table.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run ();
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ItmCatalog qw(catalog compare_catalog detached_schema diff_text);

my $ext = 'invitetomedia';
my $node = PostgreSQL::Test::Cluster->new('v2schema');
$node->init;
$node->start;

sub q_
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

# "SQLSTATE: message" of a statement that must fail ('' if it did not)
sub error_of
{
	my ($db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return '' if $ret == 0;
	my ($line) = $err =~ /ERROR:\s+(\S.*)/;
	return $line // $err;
}

sub version
{
	my ($db) = @_;
	return q_($db, "SELECT extversion FROM pg_extension WHERE extname = '$ext'");
}

# every table of the 2.0 schema
my @tables = qw(tenants sites site_hosts tenant_roles email_templates allowed_users users
  group_members media media_collaborators invites redemptions outbox retired_tokens resends
  guest_links guest_link_joins);

# the rows of a table as text, in order (created_at of tenants left out:
# it is the time of the install)
sub rows
{
	my ($db, $table, $where) = @_;
	$where //= 'true';
	my $row = $table eq 'tenants'
	  ? '(x.tenant_id, x.name, x.is_default, x.default_site_id)::text'
	  : 'x::text';
	return q_($db, "SELECT count(*) || E'\\n' || coalesce(string_agg($row, E'\\n' ORDER BY $row), '')"
		  . " FROM $ext.$table x WHERE $where");
}

# ---------------------------------------------------------------------------
# (a) updated = fresh
# ---------------------------------------------------------------------------
q_('postgres', 'CREATE DATABASE fresh');
q_('fresh', "CREATE EXTENSION $ext VERSION '2.0' CASCADE");
is(version('fresh'), '2.0', 'a fresh install at 2.0');
my $fresh = catalog($node, 'fresh');
like($fresh->{members}, qr/^table invitetomedia\.tenant_roles$/m, 'the catalog holds tenant_roles');
like($fresh->{members}, qr/^view invitetomedia\.settings$/m, '... settings as a view');
is(join(',', sort grep { /^sequence / } split /\n/, $fresh->{members}),
	'sequence invitetomedia.guest_link_joins_event_seq,sequence invitetomedia.outbox_event_seq,'
	. 'sequence invitetomedia.redemptions_event_seq,sequence invitetomedia.tenants_tenant_id_seq',
	'... and no sequence but tenants_tenant_id_seq and the event relay\'s three counters');
is( join(',', sort split /\n/, q_('fresh', qq{SELECT c::regclass::text || '=' || coalesce(w, '')
	      FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w) WHERE e.extname = '$ext'})),
	join(',', map { "invitetomedia.$_=" } sort(@tables, 'tenants_tenant_id_seq',
		'redemptions_event_seq', 'guest_link_joins_event_seq', 'outbox_event_seq')),
	'extconfig: every table, tenants_tenant_id_seq and the relay\'s counters, not the dropped sequences nor settings');
is( q_('fresh', q{SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
                   WHERE c.relnamespace = 'invitetomedia'::regnamespace AND c.relkind = 'r'
                     AND NOT c.relrowsecurity}),
	'', 'every table has row-level security enabled');
is( q_('fresh', q{SELECT string_agg(tablename || ':' || n, ',' ORDER BY tablename) FROM (
                    SELECT tablename, count(*) FILTER (WHERE permissive = 'RESTRICTIVE') AS n
                      FROM pg_policies WHERE schemaname = 'invitetomedia' GROUP BY 1) p WHERE n <> 4}),
	'', '... and four restrictive policies, one per command');
is( q_('fresh', q{SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indrelid
                  WHERE c.relnamespace = 'invitetomedia'::regnamespace
                    AND c.relname NOT IN ('tenants', 'sites', 'site_hosts', 'tenant_roles')
                    AND (i.indisunique OR i.indisprimary)
                    AND i.indkey[0] <> (SELECT attnum FROM pg_attribute a
                                         WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')}),
	'', 'tenant_id leads every primary and unique key of the tables of tenants');
is( q_('fresh', q{SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indrelid
                  WHERE c.relnamespace = 'invitetomedia'::regnamespace
                    AND c.relname NOT IN ('tenants', 'sites', 'site_hosts', 'tenant_roles')
                    -- the event relay's counters: read across tenants, not keys
                    AND indexrelid::regclass::text NOT LIKE '%event_seq_idx'
                    AND i.indkey[0] <> (SELECT attnum FROM pg_attribute a
                                         WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')}),
	'', '... and every other index but the relay\'s counters\'');
is( q_('fresh', q{SELECT string_agg(c.relname || '.' || a.attname, ',' ORDER BY c.relname || '.' || a.attname)
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                   WHERE c.relnamespace = 'invitetomedia'::regnamespace AND c.relkind = 'r'
                     AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval%'}),
	'tenants.tenant_id', 'no id is drawn from a sequence but a tenant\'s');
is( q_('fresh', q{SELECT string_agg(p.oid::regprocedure::text, ',' ORDER BY p.oid::regprocedure::text) FROM pg_proc p
                   WHERE p.pronamespace = 'invitetomedia'::regnamespace
                     AND has_function_privilege('public', p.oid, 'EXECUTE')}),
	'invitetomedia.default_site(),invitetomedia.normalize_domain(text),invitetomedia.role_rank(text),invitetomedia.tenant()',
	'PUBLIC may execute the two pure helpers, tenant() and default_site(), nothing else');
is( q_('fresh', q{SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
                   WHERE c.relnamespace = 'invitetomedia'::regnamespace
                     AND (has_table_privilege('public', c.oid, 'SELECT')
                          OR has_table_privilege('public', c.oid, 'INSERT,UPDATE,DELETE'))}),
	'', 'PUBLIC reads and writes no table or view');
is( rows('fresh', 'tenants') . "\n" . q_('fresh', q{SELECT s::text FROM invitetomedia.sites s}),
	"1\n(1,default,t,default)\n(default,1,f,1440,1,private_only,,{},http://localhost/invitetomedia/,8,00:01:00,5,0,,)",
	'a fresh install has the default tenant and site, with the install\'s settings');


my %config_rows;
$config_rows{fresh} = join('', map { rows('fresh', $_) } qw(tenants sites email_templates allowed_users));
for my $from ('1.0', '1.0.1', '1.1', '1.1.1')
{
	(my $db = "from_$from") =~ s/\W/_/g;
	q_('postgres', "CREATE DATABASE $db");
	q_($db, "CREATE EXTENSION $ext VERSION '$from' CASCADE");
	q_($db, "ALTER EXTENSION $ext UPDATE TO '2.0'");
	is(version($db), '2.0', "$from -> 2.0: at 2.0");
	compare_catalog($node, $db, $fresh, "$from -> 2.0", 'a fresh 2.0');
	is(join('', map { rows($db, $_) } qw(tenants sites email_templates allowed_users)),
		$config_rows{fresh}, "$from -> 2.0: the configuration rows of a fresh 2.0");
}

# a default privilege of the installing role lands on nothing of the extension
q_('postgres', 'CREATE ROLE peeker');
for my $db (qw(defpriv_fresh defpriv_upd))
{
	q_('postgres', "CREATE DATABASE $db");
	q_($db, q{ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO peeker;
	          ALTER DEFAULT PRIVILEGES GRANT ALL ON SEQUENCES TO peeker;
	          ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO peeker;});
}
q_('defpriv_fresh', "CREATE EXTENSION $ext VERSION '2.0' CASCADE");
q_('defpriv_upd', "CREATE EXTENSION $ext VERSION '1.1.1' CASCADE; ALTER EXTENSION $ext UPDATE TO '2.0'");
for my $db (qw(defpriv_fresh defpriv_upd))
{
	is( q_($db, q{SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'invitetomedia'::regnamespace
	               AND (has_table_privilege('peeker', c.oid, 'SELECT') OR has_table_privilege('peeker', c.oid, 'UPDATE')
	                    OR (c.relkind = 'S' AND has_sequence_privilege('peeker', c.oid, 'USAGE')))})
		  . ' '
		  . q_($db, q{SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'invitetomedia'::regnamespace
	               AND has_function_privilege('peeker', p.oid, 'EXECUTE')
	               AND p.oid <> ALL (ARRAY['invitetomedia.role_rank(text)'::regprocedure,
	                   'invitetomedia.normalize_domain(text)', 'invitetomedia.tenant()',
	                   'invitetomedia.default_site()'])}),
		'0 0', "$db: the installing role's default privileges are revoked from every 2.0 object");
}

# pg_dump of the detached members
my $fresh_schema = detached_schema($node, 'fresh');
like($fresh_schema, qr/CREATE VIEW invitetomedia\.settings /, 'a detached dump holds the extension objects');
like($fresh_schema, qr/CREATE POLICY invites_tenant_select ON invitetomedia\.invites AS RESTRICTIVE/,
	'... and the restrictive policies');
for my $from ('1.0', '1.0.1', '1.1', '1.1.1')
{
	(my $db = "from_$from") =~ s/\W/_/g;
	my $schema = detached_schema($node, $db);
	ok($schema eq $fresh_schema, "$from -> 2.0: pg_dump --schema-only of the members equals a fresh 2.0")
	  or diag(diff_text($fresh_schema, $schema));
}

# ---------------------------------------------------------------------------
# (b) 1.x data into tenant 1, site 'default'
# ---------------------------------------------------------------------------
my $h = sub { my $c = shift; return "'\\x" . ($c x 32) . "'::bytea" };
q_('postgres', 'CREATE DATABASE upd');
q_('postgres', 'CREATE ROLE itm_dba; CREATE ROLE itm_dba2');
q_('upd', "CREATE EXTENSION $ext VERSION '1.1.1' CASCADE;" . qq{
	INSERT INTO invitetomedia.email_templates VALUES ('t', 'Invitation to {MEDIA_TITLE}', 'Open {URL}'),
	                                                 ('u', 'Other', 'Go {URL}');
	UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 't', link_duration = 90,
	       link_reusability = -1, allowed_users_roles = 'specific', restrict_new_user_domains = '{blocked.example}',
	       link_base_url = 'https://media.example.com/join/', email_max_attempts = 3,
	       email_retry_delay = '2 minutes', lockout_attempts = 7, invites_per_hour = 11;
	INSERT INTO invitetomedia.allowed_users VALUES ('user', 'owner'), ('group', 'staff');
	INSERT INTO invitetomedia.users VALUES ('owner', 'owner\@site.example', 'O', 'Owner', 'admin'),
	                                       ('kim', 'kim\@site.example', 'K', 'Im', 'viewer');
	INSERT INTO invitetomedia.group_members VALUES ('staff', 'kim');
	INSERT INTO invitetomedia.media VALUES ('m1', 'video', 'Film', 'owner');
	INSERT INTO invitetomedia.media_collaborators VALUES ('m1', 'kim', 'co_viewer');
	INSERT INTO invitetomedia.invites (invite_id, token_hash, media_id, role, email, first_name, last_name,
	                                   invited_by, expires_at, max_uses, use_count)
	VALUES (41, @{[ $h->('a1') ]}, 'm1', 'viewer', 'x\@new.example', 'X', 'Y', 'owner', now() + interval '1 day', 2, 1),
	       (42, @{[ $h->('a2') ]}, 'm1', 'viewer', 'z\@new.example', 'Z', 'Y', 'owner', now() + interval '1 day', 1, 0);
	INSERT INTO invitetomedia.redemptions (redemption_id, invite_id, status, device_id) VALUES (51, 41, 'ok', 'd1');
	INSERT INTO invitetomedia.outbox (message_id, invite_id, to_email, to_name, subject, body)
	VALUES (61, 42, 'z\@new.example', 'Z Y', 'Invitation', 'Open https://media.example.com/join/tok');
	INSERT INTO invitetomedia.retired_tokens (token_hash, invite_id) VALUES (@{[ $h->('b1') ]}, 42);
	INSERT INTO invitetomedia.resends (resend_id, invite_id, actor_id, emailed) VALUES (71, 42, 'owner', true);
	INSERT INTO invitetomedia.guest_links (guest_link_id, token_hash, media_id, name, created_by)
	VALUES (81, @{[ $h->('c1') ]}, 'm1', 'open', 'owner');
	INSERT INTO invitetomedia.guest_link_joins (join_id, guest_link_id, status, email, first_name, last_name)
	VALUES (91, 81, 'ok', 'g\@guest.example', 'G', 'Uest');
	SELECT setval('invitetomedia.invites_invite_id_seq', 42);
	GRANT USAGE ON SCHEMA invitetomedia TO itm_dba, itm_dba2;
	GRANT SELECT, UPDATE ON invitetomedia.settings TO itm_dba;
	GRANT SELECT (enabled), UPDATE (enabled) ON invitetomedia.settings TO itm_dba2;
});

# the rows of 1.1.1, by its columns
my %old_cols;
my %old_rows;
for my $t (qw(settings email_templates allowed_users users group_members media media_collaborators
	invites redemptions outbox retired_tokens resends guest_links guest_link_joins))
{
	$old_cols{$t} = q_('upd', qq{SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
	                             WHERE attrelid = 'invitetomedia.$t'::regclass AND attnum > 0 AND NOT attisdropped});
	$old_rows{$t} = q_('upd', "SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM invitetomedia.$t t");
	ok($old_rows{$t} ne '', "at 1.1.1: $t has rows");
}
my ($ret, $out, $err) = $node->psql('upd', "ALTER EXTENSION $ext UPDATE TO '2.0'");
is($ret, 0, '1.1.1 -> 2.0 with data') or diag($err);
is(version('upd'), '2.0', '... at 2.0');
is( join("\n", $err =~ /WARNING:\s+(.*)/g),
	join("\n",
		'granted SELECT on view invitetomedia.settings to itm_dba as on its 1.1.1 table',
		'granted UPDATE on view invitetomedia.settings to itm_dba as on its 1.1.1 table',
		'granted SELECT (enabled) on view invitetomedia.settings to itm_dba2 as on its 1.1.1 table',
		'granted UPDATE (enabled) on view invitetomedia.settings to itm_dba2 as on its 1.1.1 table'),
	'the update names the DBA\'s grants it carried from the settings table to the view, and nothing else');

for my $t (sort keys %old_rows)
{
	next if $t eq 'settings';
	is(q_('upd', "SELECT string_agg(r::text, E'\\n' ORDER BY r::text) FROM (SELECT $old_cols{$t} FROM invitetomedia.$t) r"),
		$old_rows{$t}, "$t: every row and id as at 1.1.1");
	my $site = ($t =~ /^(users|group_members|media|media_collaborators)$/) ? '' : " OR site_id <> 'default'";
	is(q_('upd', "SELECT count(*) FROM invitetomedia.$t WHERE tenant_id <> 1$site"),
		'0', "$t: every row is tenant 1's" . ($site ? ", site 'default'" : ''));
}
is( q_('upd', 'SELECT t::text FROM invitetomedia.settings t'),
	$old_rows{settings} =~ s/\)$/,,)/r,
	'settings shows the old row (and the site\'s from_address, message_id_domain)');
is( q_('upd', q{SELECT s::text FROM invitetomedia.sites s}),
	'(default,1,t,90,-1,specific,t,{blocked.example},https://media.example.com/join/,3,00:02:00,7,11,,)',
	'... which is site default\'s row, of tenant 1');
is(rows('upd', 'tenants'), "1\n(1,default,t,default)", 'tenant 1, the default, with site default as its default');
is( q_('upd', q{SELECT state || ' ' || invite_id || ' ' || site_id FROM invitetomedia.invite_status ORDER BY invite_id}),
	"used 41 default\npending 42 default", 'invite_status reads the site\'s settings');
is( q_('upd', q{SET ROLE itm_dba; UPDATE invitetomedia.settings SET link_duration = 120 RETURNING link_duration}),
	'120', 'a 1.x DBA\'s UPDATE of settings works (the carried grant)');
is(q_('upd', q{SELECT link_duration FROM invitetomedia.sites WHERE site_id = 'default'}), '120',
	'... and changes the default site');
like(error_of('upd', q{SET ROLE itm_dba; UPDATE invitetomedia.settings SET link_duration = 0}),
	qr/^23514: invalid link_duration: 0/, '... with 1.x\'s errors (23514)');
like(error_of('upd', q{SET ROLE itm_dba2; UPDATE invitetomedia.settings SET link_duration = 5}),
	qr/^42501: permission denied/, 'the column grant carried: itm_dba2 may not update link_duration (42501)');
is(q_('upd', q{SET ROLE itm_dba2; UPDATE invitetomedia.settings SET enabled = true RETURNING enabled}), 't',
	'... but enabled');
like(error_of('upd', q{DELETE FROM invitetomedia.settings}), qr/^23001: invitetomedia.settings must keep its row/,
	'settings keeps its row (23001)');
like(error_of('upd', q{INSERT INTO invitetomedia.settings (enabled) VALUES (true)}), qr/^0A000: /,
	'settings takes no new row (0A000)');
like(error_of('upd', q{UPDATE invitetomedia.settings SET invite_email_template = 'nope'}),
	qr/^23503: invalid invite_email_template: 'nope'/, 'a template the site does not have (23503)');
like(error_of('upd', q{UPDATE invitetomedia.sites SET from_address = E'a\@b.example\r\nBcc: c\@d.example'}),
	qr/^23514: invalid from_address/, 'a from_address that would inject a header (23514)');
like(error_of('upd', q{UPDATE invitetomedia.email_templates SET site_id = 'other' WHERE name = 'u'}),
	qr/^0A000: email template 'u' of site 'default' cannot move/, 'a template cannot move to another site (0A000)');
is(q_('upd', q{UPDATE invitetomedia.email_templates SET name = 'tt' WHERE name = 't';
               SELECT invite_email_template FROM invitetomedia.settings}), 'tt',
	'renaming the site\'s template follows in its settings (ON UPDATE CASCADE)');

# ---------------------------------------------------------------------------
# (c) isolation by row-level security
# ---------------------------------------------------------------------------
q_('upd', q{
	CREATE FUNCTION public.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
	    EXECUTE stmt;
	    RETURN 'ok';
	EXCEPTION WHEN OTHERS THEN
	    RETURN SQLSTATE;
	END $$;
	GRANT EXECUTE ON FUNCTION public.try(text) TO PUBLIC;
});
my $ta = q_('upd', q{SELECT invitetomedia.tenant_create('acme')});
my $tb = q_('upd', q{SELECT invitetomedia.tenant_create('globex')});
is("$ta $tb", '2 3', 'two tenants: 2 and 3');
my %ten = (r_a => $ta, r_b => $tb);
my %site = ($ta => 'acme-kms', $tb => 'globex-kms', 1 => 'default');
for my $t ($ta, $tb)
{
	my $s = $site{$t};
	my $c = $t == $ta ? 'a' : 'b';
	q_('upd', qq{
		SELECT invitetomedia.site_create($t, '$s', 'https://$s.example/i/');
		INSERT INTO invitetomedia.email_templates (tenant_id, site_id, name, subject, body)
		VALUES ($t, '$s', 't', 'Hi', 'Open {URL}');
		SELECT invitetomedia.site_configure('$s', '{"enabled": true, "invite_email_template": "t",
		                                            "from_address": "noreply\@$s.example",
		                                            "message_id_domain": "$s.example"}');
		INSERT INTO invitetomedia.site_hosts VALUES ('$s.example', '$s');
		INSERT INTO invitetomedia.allowed_users (tenant_id, site_id, principal_type, principal_id)
		VALUES ($t, '$s', 'user', 'owner');
		INSERT INTO invitetomedia.users (tenant_id, user_id, email, first_name, last_name, role)
		VALUES ($t, 'owner', 'owner\@$s.example', 'O', 'W', 'admin'), ($t, 'r_a', NULL, 'R', 'A', 'admin'),
		       ($t, 'r_b', NULL, 'R', 'B', 'admin');
		INSERT INTO invitetomedia.group_members (tenant_id, group_id, user_id) VALUES ($t, 'staff', 'owner');
		INSERT INTO invitetomedia.media (tenant_id, media_id, media_type, title, owner_id)
		VALUES ($t, 'm1', 'video', 'Film of $s', 'owner');
		INSERT INTO invitetomedia.media_collaborators (tenant_id, media_id, user_id, permission)
		VALUES ($t, 'm1', 'r_a', 'co_viewer');
		-- each tenant has an invite and a guest link made by r_a and by r_b
		INSERT INTO invitetomedia.invites (tenant_id, site_id, invite_id, token_hash, media_id, role, email,
		                                   first_name, last_name, invited_by, expires_at, max_uses)
		VALUES ($t, '$s', 41, @{[ $h->("${c}1") ]}, 'm1', 'viewer', 'x\@n.example', 'X', 'Y', 'r_a',
		        now() + interval '1 day', 1),
		       ($t, '$s', 142, @{[ $h->("${c}2") ]}, 'm1', 'viewer', 'y\@n.example', 'X', 'Y', 'r_b',
		        now() + interval '1 day', 1);
		INSERT INTO invitetomedia.redemptions (tenant_id, site_id, redemption_id, invite_id, status)
		VALUES ($t, '$s', 51, 41, 'ok');
		INSERT INTO invitetomedia.outbox (tenant_id, site_id, message_id, invite_id, to_email, to_name, subject, body)
		VALUES ($t, '$s', 61, 41, 'x\@n.example', 'X Y', 'Hi', 'Open it');
		INSERT INTO invitetomedia.retired_tokens (tenant_id, site_id, token_hash, invite_id)
		VALUES ($t, '$s', @{[ $h->("${c}3") ]}, 41);
		INSERT INTO invitetomedia.resends (tenant_id, site_id, resend_id, invite_id, actor_id, emailed)
		VALUES ($t, '$s', 71, 41, 'owner', false);
		INSERT INTO invitetomedia.guest_links (tenant_id, site_id, guest_link_id, token_hash, media_id, name, created_by)
		VALUES ($t, '$s', 81, @{[ $h->("${c}4") ]}, 'm1', 'open', 'r_a'),
		       ($t, '$s', 181, @{[ $h->("${c}5") ]}, 'm1', 'open', 'r_b');
		INSERT INTO invitetomedia.guest_link_joins (tenant_id, site_id, join_id, guest_link_id, status, email,
		                                            first_name, last_name)
		VALUES ($t, '$s', 91, 81, 'ok', 'g\@guest.example', 'G', 'U');
	});
}
q_('upd', qq{
	CREATE ROLE r_a; CREATE ROLE r_b; CREATE ROLE r_x;
	INSERT INTO invitetomedia.tenant_roles VALUES ('r_a', $ta), ('r_b', $tb);
	GRANT USAGE ON SCHEMA invitetomedia TO r_a, r_b, r_x;
	GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA invitetomedia TO r_a, r_b, r_x;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA invitetomedia TO r_a, r_b, r_x;
	-- the default tenant has a host and a mapped role too
	INSERT INTO invitetomedia.site_hosts VALUES ('media.example.com', 'default');
	INSERT INTO invitetomedia.tenant_roles VALUES ('r_one', 1);
});
for my $t (@tables)
{
	my $n = q_('upd', "SELECT count(DISTINCT tid) FROM (SELECT " . tenant_of($t) . " AS tid FROM invitetomedia.$t x) y"
		  . " WHERE tid IN ($ta, $tb)");
	is($n, '2', "$t has rows of tenants $ta and $tb");
}

# a row of the table made unique in its tenant, and one of another tenant
my %vary = (
	sites => '{"site_id": "zz-new", "invite_email_template": null}',
	tenant_roles => '{"role_name": "zz_new"}',
	email_templates => '{"name": "zz"}',
	allowed_users => '{"principal_id": "zz"}',
	users => '{"user_id": "zz", "email": null}',
	group_members => '{"group_id": "zz"}',
	media => '{"media_id": "zz"}',
	media_collaborators => '{"user_id": "zz"}',
	redemptions => '{"redemption_id": 999}',
	outbox => '{"message_id": 999}',
	retired_tokens => '{"token_hash": "\\\\x' . ('ee' x 32) . '"}',
	resends => '{"resend_id": 999}',
	guest_link_joins => '{"join_id": 999}',
	invites => '{"invite_id": 999, "token_hash": "\\\\x' . ('ef' x 32) . '"}',
	guest_links => '{"guest_link_id": 999, "token_hash": "\\\\x' . ('fe' x 32) . '"}',
	site_hosts => '{"host": "zz.example"}',
	tenants => '{"name": "zz"}',
);
sub tenant_of
{
	my ($t) = @_;
	return $t eq 'site_hosts'
	  ? '(SELECT s.tenant_id FROM invitetomedia.sites s WHERE s.site_id = x.site_id)'
	  : 'x.tenant_id';
}

for my $role (qw(r_a r_b))
{
	my $mine = $ten{$role};
	my $other = $mine == $ta ? $tb : $ta;
	is(q_('upd', "SET ROLE $role; SELECT invitetomedia.tenant()"), $mine, "$role acts for tenant $mine");
	for my $t (@tables)
	{
		my $tof = tenant_of($t);
		# what the owner sees of the tenant (invites and guest links: the
		# role's own, by the 1.x read policy)
		my $own = q_('upd', "SELECT count(*) FROM invitetomedia.$t x WHERE $tof = $mine"
			  . ($t eq 'invites' ? " AND invited_by = '$role'" : '')
			  . ($t eq 'guest_links' ? " AND created_by = '$role'" : ''));
		ok($own > 0, "$t: tenant $mine has rows $role may see");
		is( q_('upd', "SET ROLE $role; SELECT count(*) || ' ' || count(*) FILTER (WHERE $tof IS DISTINCT FROM $mine)"
				  . " FROM invitetomedia.$t x"),
			"$own 0", "$role reads its tenant's $t only ($own rows)");
		my $v = $vary{$t};
		my $vo = $t eq 'site_hosts'
		  ? qq{jsonb_build_object('host', 'zz.example', 'site_id', '$site{$other}')}
		  : qq{'$v'::jsonb || jsonb_build_object('tenant_id', $other)};
		my $ins_other = "INSERT INTO invitetomedia.$t SELECT (jsonb_populate_record(x, $vo)).* "
		  . "FROM invitetomedia.$t x LIMIT 1";
		my $ins_own = "INSERT INTO invitetomedia.$t SELECT (jsonb_populate_record(x, '$v')).* "
		  . "FROM invitetomedia.$t x LIMIT 1";
		(my $q_other = $ins_other) =~ s/'/''/g;
		(my $q_own = $ins_own) =~ s/'/''/g;
		my $guarded = ($t eq 'invites' || $t eq 'guest_links');
		if ($guarded)
		{
			# written through the API only (the write guard): no row at all
			is(q_('upd', "BEGIN; SET LOCAL ROLE $role; SELECT public.try('$q_own'); ROLLBACK;"), '42501',
				"$role cannot insert into $t at all (the write guard, 42501)");
			is( q_('upd', "BEGIN; SET LOCAL ROLE $role;"
					  . " SELECT public.try('UPDATE invitetomedia.$t SET revoked_by = revoked_by'); ROLLBACK;"),
				'42501', "... nor update it (42501)");
			next;
		}
		is(q_('upd', "BEGIN; SET LOCAL ROLE $role; SELECT public.try('$q_other'); ROLLBACK;"), '42501',
			"$role cannot insert a row of tenant $other into $t (42501)");
		if ($t ne 'tenants')
		{
			is( q_('upd', "BEGIN; SET LOCAL ROLE $role; $ins_own;"
					  . " SELECT count(*) FILTER (WHERE $tof = $mine) FROM invitetomedia.$t x; ROLLBACK;"),
				$own + 1, "$role inserts a row of its tenant into $t");
		}
		my $noop = $t eq 'site_hosts' ? 'host = host' : 'tenant_id = tenant_id';
		is( q_('upd', "BEGIN; SET LOCAL ROLE $role;"
				  . " WITH u AS (UPDATE invitetomedia.$t x SET $noop RETURNING $tof AS tid)"
				  . " SELECT count(*) || ' ' || count(*) FILTER (WHERE tid <> $mine) FROM u; ROLLBACK;"),
			"$own 0", "$role updates its tenant's $t only");
		my $move = $t eq 'site_hosts' ? "site_id = ''$site{$other}''" : "tenant_id = $other";
		is( q_('upd', "BEGIN; SET LOCAL ROLE $role; SELECT public.try("
				  . "'UPDATE invitetomedia.$t x SET $move'); ROLLBACK;"),
			($t =~ /^(tenants|sites|email_templates)$/ ? '0A000' : '42501'),
			"$role cannot move its $t rows to tenant $other ("
			  . ($t =~ /^(tenants|sites|email_templates)$/ ? 'its trigger' : 'row-level security') . ')');
		# (tenants, sites and templates are dropped by the admin functions;
		# a role deleting its own mapping would stop acting for its tenant)
		next if $t =~ /^(tenants|sites|tenant_roles|email_templates)$/;
		my $before = q_('upd', "SELECT count(*) FROM invitetomedia.$t");
		is( q_('upd', "BEGIN; SET LOCAL ROLE $role;"
				  . " SELECT public.try('DELETE FROM invitetomedia.$t'); RESET ROLE;"
				  . " SELECT count(*) FILTER (WHERE $tof = $mine) || ' ' || count(*) FROM invitetomedia.$t x; ROLLBACK;"),
			"ok\n0 " . ($before - $own), "$role deletes its tenant's $t only");
	}
	# the views and settings
	is( q_('upd', "SET ROLE $role; SELECT (SELECT string_agg(DISTINCT site_id, ',') FROM invitetomedia.invite_status)"
			  . " || ' ' || (SELECT count(*) FROM invitetomedia.guest_link_status)"
			  . " || ' ' || (SELECT count(*) FROM invitetomedia.guest_joins)"
			  . " || ' ' || (SELECT count(*) FROM invitetomedia.email_messages)"
			  . " || ' ' || (SELECT sum(messages) FROM invitetomedia.email_queue)"
			  . " || ' ' || (SELECT link_base_url FROM invitetomedia.settings)"),
		"$site{$mine} 2 1 1 1 https://$site{$mine}.example/i/",
		"$role: the views and settings show its tenant's rows and default site only");
	# the SQL functions
	is( q_('upd', "SET ROLE $role; SELECT invitetomedia.may_invite_at('$site{$mine}', 'owner', 'm1')"
			  . " || ' ' || invitetomedia.may_invite('owner', 'm1')"
			  . " || ' ' || invitetomedia.domain_allowed_at('$site{$mine}', 'a\@b.example')"
			  . " || ' ' || invitetomedia.guest_allowed_at('$site{$mine}', 'a\@b.example')"),
		'true true true true', "$role: the rules answer on its tenant's site");
	for my $f ("may_invite_at('$site{$other}', 'owner', 'm1')", "domain_allowed_at('$site{$other}', 'a\@b.example')",
		"guest_allowed_at('$site{$other}', 'a\@b.example')", "may_invite_at('default', 'owner', 'm1')")
	{
		like(error_of('upd', "SET ROLE $role; SELECT invitetomedia.$f"), qr/^42704: site "[\w-]+" does not exist/,
			"$role: $f answers 42704, as a site that does not exist");
	}
	is( q_('upd', "SET ROLE $role; SELECT string_agg(concat_ws(' ', message_id, tenant_id, site_id, from_address,"
			  . " message_id_domain), ',') FROM invitetomedia.email_claim_sites(10, '1 minute')"),
		"61 $mine $site{$mine} noreply\@$site{$mine}.example $site{$mine}.example",
		"$role: email_claim_sites claims its tenant's message, with its site's from_address and domain");
	is(q_('upd', "SET ROLE $role; SELECT invitetomedia.email_sent(61, 1)"), 't', "$role: email_sent of its message");
}
is(q_('upd', q{SELECT count(*) FROM invitetomedia.outbox WHERE message_id = 61 AND sent_at IS NULL}), '1',
	'... each sent its own tenant\'s message 61, not tenant 1\'s');
is(q_('upd', "SET ROLE r_x; SELECT coalesce(invitetomedia.tenant()::text, 'none')"), '1',
	'an unmapped role acts for the default tenant');
for my $t (@tables)
{
	my $tof = tenant_of($t);
	my $own = q_('upd', "SELECT count(*) FROM invitetomedia.$t x WHERE $tof = 1"
		  . ($t =~ /^(invites|guest_links)$/ ? ' AND false' : ''));
	is(q_('upd', "SET ROLE r_x; SELECT count(*) || ' ' || count(*) FILTER (WHERE $tof <> 1) FROM invitetomedia.$t x"),
		"$own 0", "r_x reads the default tenant's $t only ($own rows)");
}
is(q_('upd', q{SET ROLE r_x; SELECT message_id FROM invitetomedia.email_claim(10, '1 minute')}), '61',
	'r_x: email_claim claims the default site\'s message');
q_('upd', 'UPDATE invitetomedia.tenants SET is_default = false WHERE tenant_id = 1');
is(q_('upd', "SET ROLE r_x; SELECT coalesce(invitetomedia.tenant()::text, 'none')"), 'none',
	'with no default tenant, an unmapped role acts for none');
for my $t (@tables, qw(settings invite_status guest_link_status guest_joins email_messages))
{
	is(q_('upd', "SET ROLE r_x; SELECT count(*) FROM invitetomedia.$t"), '0', "... and reads no row of $t");
}
like(error_of('upd', q{SET ROLE r_x; SELECT * FROM invitetomedia.email_claim()}),
	qr/^42501: the calling role acts for no tenant/, '... email_claim refuses (42501)');
is(q_('upd', q{SET ROLE r_x; SELECT invitetomedia.may_invite('owner', 'm1')}), 'f', '... may_invite is false');
q_('upd', 'UPDATE invitetomedia.tenants SET is_default = true WHERE tenant_id = 1');
like(error_of('upd', 'UPDATE invitetomedia.tenants SET is_default = true WHERE tenant_id = 2'),
	qr/^23P01: .*tenants_one_default/, 'at most one default tenant (23P01)');

# ---------------------------------------------------------------------------
# (d) administration
# ---------------------------------------------------------------------------
my @refusals = (
	[ q{SELECT invitetomedia.tenant_create(NULL)}, '22004', 'tenant_create: name must not be NULL' ],
	[ q{SELECT invitetomedia.tenant_create(' ')}, '22023', 'invalid tenant name' ],
	[ q{SELECT invitetomedia.tenant_create(E'a\nb')}, '22023', 'invalid tenant name' ],
	[ q{SELECT invitetomedia.tenant_create('acme')}, '23505', q{tenant 'acme' already exists} ],
	[ q{SELECT * FROM invitetomedia.tenant_drop(NULL)}, '22004', 'tenant_drop: tenant_id must not be NULL' ],
	[ q{SELECT * FROM invitetomedia.tenant_drop(2, NULL)}, '22004', 'tenant_drop: cascade must not be NULL' ],
	[ q{SELECT * FROM invitetomedia.tenant_drop(999)}, '42704', 'tenant 999 does not exist' ],
	[ qq{SELECT * FROM invitetomedia.tenant_drop($ta)}, '2BP01', "tenant $ta ('acme') still has roles acting for it: r_a" ],
	[ q{SELECT * FROM invitetomedia.tenant_drop(1)}, '2BP01', q{tenant 1 ('default') still has roles acting for it: r_one} ],
	[ q{BEGIN; DELETE FROM invitetomedia.tenant_roles WHERE tenant_id = 1; SELECT * FROM invitetomedia.tenant_drop(1)},
	  '2BP01', q{tenant 1 ('default') is the default tenant} ],
	[ q{SELECT invitetomedia.site_create(NULL, 'x')}, '22004', 'site_create: tenant_id must not be NULL' ],
	[ q{SELECT invitetomedia.site_create(2, NULL)}, '22004', 'site_create: site_id must not be NULL' ],
	[ q{SELECT invitetomedia.site_create(2, 'Bad Id')}, '22023', q{invalid site_id: 'Bad Id'} ],
	[ q{SELECT invitetomedia.site_create(999, 'x')}, '42704', 'tenant 999 does not exist' ],
	[ q{SELECT invitetomedia.site_create(2, 'globex-kms')}, '23505', q{site 'globex-kms' already exists} ],
	[ q{SELECT invitetomedia.site_create(2, 'x', 'ftp://x/')}, '23514', q{invalid link_base_url: 'ftp://x/'} ],
	[ q{SELECT invitetomedia.site_create(2, 'x', 'https://x/join')}, '23514', q{invalid link_base_url: 'https://x/join'} ],
	[ q{SELECT invitetomedia.site_configure(NULL, '{}')}, '22004', 'site_configure: site_id must not be NULL' ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', NULL)}, '22004', 'site_configure: config must not be NULL' ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '[1]')}, '22023', 'site_configure: config must be a JSON object' ],
	[ q{SELECT invitetomedia.site_configure('nope', '{}')}, '42704', 'site "nope" does not exist' ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '{"colour": 1}')}, '42703', q{site_configure: 'colour' is not a setting} ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '{"tenant_id": 3}')}, '22023', 'site_configure cannot change tenant_id' ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '{"site_id": "x"}')}, '22023', 'site_configure cannot change site_id' ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '{"link_duration": "soon"}')}, '22023', 'invalid link_duration: "soon"' ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '{"link_duration": 0}')}, '23514', 'invalid link_duration: 0' ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '{"enabled": null}')}, '23514', 'invalid enabled: NULL' ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '{"invite_email_template": "nope"}')}, '23503', q{invalid invite_email_template: 'nope'} ],
	[ q{SELECT invitetomedia.site_configure('acme-kms', '{"message_id_domain": "a b"}')}, '23514', q{invalid message_id_domain: 'a b'} ],
	[ q{SELECT invitetomedia.site_disable(NULL)}, '22004', 'site_disable: site_id must not be NULL' ],
	[ q{SELECT invitetomedia.site_disable('nope')}, '42704', 'site "nope" does not exist' ],
	[ q{SELECT * FROM invitetomedia.site_drop(NULL)}, '22004', 'site_drop: site_id must not be NULL' ],
	[ q{SELECT * FROM invitetomedia.site_drop('nope')}, '42704', 'site "nope" does not exist' ],
	[ q{SELECT * FROM invitetomedia.site_drop('acme-kms')}, '55006', q{site 'acme-kms' is the default site of tenant 2} ],
	[ q{DELETE FROM invitetomedia.sites WHERE site_id = 'acme-kms'}, '55006', q{site 'acme-kms' is the default site of tenant 2} ],
	[ q{DELETE FROM invitetomedia.tenants WHERE tenant_id = 3}, '2BP01', 'tenant 3 still has sites' ],
	[ q{TRUNCATE invitetomedia.tenants CASCADE}, '23001', 'invitetomedia.tenants cannot be truncated' ],
	[ q{TRUNCATE invitetomedia.sites CASCADE}, '23001', 'invitetomedia.sites cannot be truncated' ],
);
for my $r (@refusals)
{
	my ($sql, $code, $msg) = @$r;
	like(error_of('upd', $sql), qr/^\Q$code: $msg\E/, "$sql: $code");
}
my (undef, undef, $hint_err) = $node->psql('upd', qq{SELECT * FROM invitetomedia.tenant_drop($ta)});
like($hint_err, qr/HINT:  .*tenant_drop\($ta, cascade => true\)/, 'the refusal names the way out in its hint');
for my $f ('tenant_create(text)', 'tenant_drop(integer,boolean)', 'site_create(integer,text,text,boolean)',
	'site_configure(text,jsonb)', 'site_disable(text)', 'site_drop(text)')
{
	is(q_('upd', "SELECT has_function_privilege('public', 'invitetomedia.$f', 'EXECUTE')"), 'f',
		"$f: not executable by PUBLIC");
}

# happy paths
my $tc = q_('upd', q{SELECT invitetomedia.tenant_create('initech')});
is($tc, '4', 'tenant_create returns the new tenant_id');
is(rows('upd', 'tenants', "tenant_id = $tc"), "1\n(4,initech,f,)", '... not default, with no site');
q_('upd', q{SELECT invitetomedia.site_create(4, 'ini-a')});
is(q_('upd', 'SELECT default_site_id FROM invitetomedia.tenants WHERE tenant_id = 4'), 'ini-a',
	'site_create: the first site becomes the default');
q_('upd', q{SELECT invitetomedia.site_create(4, 'ini-b', 'https://b.initech.example/?t=')});
is(q_('upd', 'SELECT default_site_id FROM invitetomedia.tenants WHERE tenant_id = 4'), 'ini-a',
	'... a second one does not');
is( q_('upd', q{SELECT concat_ws(' ', tenant_id, enabled, link_base_url) FROM invitetomedia.sites WHERE site_id = 'ini-b'}),
	'4 f https://b.initech.example/?t=', '... disabled, with its link_base_url');
q_('upd', q{SELECT invitetomedia.site_create(4, 'ini-c', NULL, make_default => true)});
is(q_('upd', 'SELECT default_site_id FROM invitetomedia.tenants WHERE tenant_id = 4'), 'ini-c',
	'... make_default makes it the default');
q_('upd', q{SELECT invitetomedia.site_configure('ini-b', '{"enabled": true, "link_duration": 60, "email_retry_delay": "2 minutes",
             "restrict_new_user_domains": ["Blocked.Example", "@blocked.example"], "from_address": "no-reply@initech.example"}')});
is( q_('upd', q{SELECT concat_ws(' ', enabled, link_duration, email_retry_delay, restrict_new_user_domains,
                                 from_address, link_base_url, lockout_attempts) FROM invitetomedia.sites WHERE site_id = 'ini-b'}),
	't 60 00:02:00 {blocked.example} no-reply@initech.example https://b.initech.example/?t= 5',
	'site_configure sets the keys given (normalised as settings were) and leaves the others');
q_('upd', q{SELECT invitetomedia.site_configure('ini-b', '{"from_address": null}')});
is(q_('upd', q{SELECT from_address IS NULL FROM invitetomedia.sites WHERE site_id = 'ini-b'}), 't',
	'... a JSON null sets NULL');
is(q_('upd', q{SELECT invitetomedia.site_disable('ini-b') || ' ' || invitetomedia.site_disable('ini-b')}), 'true false',
	'site_disable: true, then false as it already is');
is(q_('upd', q{SELECT enabled FROM invitetomedia.sites WHERE site_id = 'ini-b'}), 'f', '... the site is disabled');

# site_drop: the site's rows, none of another site's
q_('upd', q{
	INSERT INTO invitetomedia.email_templates (tenant_id, site_id, name, subject, body) VALUES (4, 'ini-b', 't', 'S', '{URL}');
	SELECT invitetomedia.site_configure('ini-b', '{"invite_email_template": "t"}');
	INSERT INTO invitetomedia.site_hosts VALUES ('b.initech.example', 'ini-b');
	INSERT INTO invitetomedia.allowed_users (tenant_id, site_id, principal_type, principal_id) VALUES (4, 'ini-b', 'user', 'u');
	INSERT INTO invitetomedia.users (tenant_id, user_id) VALUES (4, 'u');
	INSERT INTO invitetomedia.invites (tenant_id, site_id, invite_id, token_hash, media_id, role, email,
	                                   first_name, last_name, invited_by, expires_at, max_uses)
	SELECT 4, s, n, decode(md5(s || n) || md5(n || s), 'hex'), 'm', 'viewer', 'e@x.example', 'F', 'L', 'u', now(), 1
	  FROM (VALUES ('ini-a', 1), ('ini-b', 2), ('ini-b', 3)) v(s, n);
	INSERT INTO invitetomedia.outbox (tenant_id, site_id, message_id, invite_id, to_email, to_name, subject, body)
	VALUES (4, 'ini-b', 1, 2, 'e@x.example', 'F L', 'S', 'B'), (4, 'ini-a', 2, 1, 'e@x.example', 'F L', 'S', 'B');
});
is( q_('upd', q{SELECT string_agg(table_name || '=' || rows_deleted, ' ') FROM invitetomedia.site_drop('ini-b')}),
	'redemptions=0 retired_tokens=0 resends=0 outbox=1 guest_link_joins=0 invites=2 guest_links=0 allowed_users=1'
	  . ' email_templates=1 site_hosts=1 sites=1',
	'site_drop deletes the site\'s rows and counts them');
is( q_('upd', q{SELECT (SELECT string_agg(site_id, ',' ORDER BY site_id) FROM invitetomedia.sites WHERE tenant_id = 4)
                || ' ' || (SELECT count(*) FROM invitetomedia.invites WHERE tenant_id = 4)
                || ' ' || (SELECT count(*) FROM invitetomedia.outbox WHERE tenant_id = 4)
                || ' ' || (SELECT count(*) FROM invitetomedia.users WHERE tenant_id = 4)}),
	'ini-a,ini-c 1 1 1', '... and leaves the other sites\' rows and the tenant\'s directory');

# tenant_drop: exactly the tenant's rows, counted, in one transaction
sub all_rows
{
	my ($db, $where) = @_;
	return join("\n", map { "$_: " . rows($db, $_, $where // 'true') } @tables);
}
my %expect;
for my $t (@tables)
{
	$expect{$t} = q_('upd', "SELECT count(*) FROM invitetomedia.$t x WHERE " . tenant_of($t) . " = $tb");
}
my $others_before = join("\n", map { "$_: " . rows('upd', $_, tenant_of($_) . " <> $tb") } @tables);
# a failure at the last step undoes every delete before it
q_('upd', q{CREATE FUNCTION public.no_del() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused by test' USING ERRCODE = 'P0001'; END $$;
            CREATE TRIGGER zz_test_refuse BEFORE DELETE ON invitetomedia.tenants
              FOR EACH ROW EXECUTE FUNCTION public.no_del();});
my $all_before = all_rows('upd');
like(error_of('upd', "SELECT * FROM invitetomedia.tenant_drop($tb, cascade => true)"), qr/^P0001: refused by test/,
	'tenant_drop failing at its last delete');
is(all_rows('upd'), $all_before, '... deleted nothing: it is one transaction');
q_('upd', 'DROP TRIGGER zz_test_refuse ON invitetomedia.tenants; DROP FUNCTION public.no_del()');
my %got = map { split /=/ } split / /,
  q_('upd', "SELECT string_agg(table_name || '=' || rows_deleted, ' ') FROM invitetomedia.tenant_drop($tb, cascade => true)");
is_deeply(\%got, \%expect, 'tenant_drop(cascade) counts, per table, every row the tenant had')
  or diag(explain(\%got), explain(\%expect));
is(join(',', sort keys %got), join(',', sort @tables), '... naming every table');
for my $t (@tables)
{
	is(q_('upd', "SELECT count(*) FROM invitetomedia.$t x WHERE " . tenant_of($t) . " = $tb"), '0',
		"... and no row of tenant $tb is left in $t");
}
is(join("\n", map { "$_: " . rows('upd', $_, tenant_of($_) . " <> $tb") } @tables),
	$others_before, '... while every row of the other tenants stays');
is(q_('upd', "SELECT count(*) FROM invitetomedia.tenant_roles WHERE role_name = 'r_b'"), '0',
	'... r_b is mapped no more');
is(q_('upd', "SET ROLE r_b; SELECT invitetomedia.tenant()"), '1', '... and acts for the default tenant');

# ---------------------------------------------------------------------------
# (e) pg_dump and pg_restore keep every tenant
# ---------------------------------------------------------------------------
# three tenants (1, acme, initech) and a default site whose configuration
# is no longer the install's
my $dump = $node->basedir . '/upd.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('upd') ], 'pg_dump of a 2.0 database');
q_('postgres', 'CREATE DATABASE restored');
# CREATE EXTENSION in a dump names no version: while default_version is
# 1.1.1, the database is given 2.0 first
q_('restored', "CREATE EXTENSION $ext VERSION '2.0' CASCADE");
# and the dump's CREATE SCHEMA, which that made, is left out of the restore
my ($toc, $toc_err);
IPC::Run::run([ 'pg_restore', '-l', $dump ], '>', \$toc, '2>', \$toc_err) or die "pg_restore -l: $toc_err";
my $list = $node->basedir . '/upd.list';
open my $lf, '>', $list or die;
print $lf join('', grep { !/ SCHEMA - invitetomedia / } split /^/, $toc);
close $lf;
like($toc, qr/ SCHEMA - invitetomedia /, 'the dump creates the schema (left out)');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-L', $list, '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a database at 2.0');
is(q_('restored', 'SELECT count(*) FROM invitetomedia.tenants'), '3', 'three tenants restored');
for my $t (@tables)
{
	my $r = rows('upd', $t);
	ok($r !~ /^0\n/, "$t has rows to restore");
	is(rows('restored', $t), $r, "$t: every row restored");
}
is( q_('restored', 'SELECT last_value FROM invitetomedia.tenants_tenant_id_seq'),
	q_('upd', 'SELECT last_value FROM invitetomedia.tenants_tenant_id_seq'), 'the tenants\' sequence restored');
is(q_('restored', "SET ROLE r_a; SELECT invitetomedia.tenant() || ' ' || count(*) FROM invitetomedia.media"),
	"$ta 1", 'a mapped role acts for its tenant in the restored database');

$node->stop;
done_testing();
