# Version 2.0 (issue 22): the C API on sites and tenants.
#
# One fresh 2.0 database with the default tenant the install makes and two
# more, acme (sites acme-kms, acme-canvas) and globex (site globex-kms).
# Both tenants have a user "owner" and a media "vid": the same ids, so a
# statement that forgets its tenant finds the other tenant's row.  Roles
# app_a and app_b are mapped to acme and globex in tenant_roles; app_x is
# mapped to none and acts for the default tenant.
#
# The checks:
#   1   a link made at a site carries the site's base URL; the 1.x
#       signature makes it at the tenant's default site
#   2   a token of acme at globex's site: not_found (consume, check, join);
#       acme's site named by globex's role: 42704, as a site that does not
#       exist; a link id of acme: 42704 for revoke and resend
#   3   a link of acme-kms at acme-canvas: not_found
#   4   the use at its own site: ok, and the invitee's user is acme's
#   5   a disabled site answers disabled for its links; the tenant's other
#       site goes on
#   6   the mail of a link goes to the outbox of its tenant and site, with
#       the site's template
#   7   app_x acts for the default tenant (disabled, as a fresh install is)
#   8   invite_purge purges the caller's tenant only
#   9   ids are drawn: two tenants' links do not share a counter
#  10   a 1.x directory sync (INSERT without tenant_id) writes its own
#       role's tenant's rows; a template without a site is the default
#       site's; a role bound to no tenant cannot write
#  11   guest links: made at a site, not_found at another tenant's site,
#       joined at their own
#  13   a site dropped in this very session is gone for the next call,
#       though the call before cached its name
#  12   the cached binding is used only where its look-up may run: a
#       function owner that may not read tenant_roles fails at once, not
#       only when this backend's cache is empty
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('v2api');
$node->init;
$node->start;

sub run_sql { return $node->safe_psql('postgres', shift); }

# as a role: SET ROLE, then the statement (one transaction per call)
sub as {
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', "SET ROLE $role; $sql");
}

# the SQLSTATE and message of a statement run as a role, or 'ok'
sub try_as {
	my ($role, $sql) = @_;
	$sql =~ s/'/''/g;
	return as($role, "SELECT public.try('$sql')");
}

run_sql(q{
CREATE EXTENSION invitetomedia VERSION '2.0' CASCADE;
CREATE FUNCTION public.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION public.try(text) TO PUBLIC;
});

my $a = run_sql(q{INSERT INTO invitetomedia.tenants (name) VALUES ('acme') RETURNING tenant_id});
my $b = run_sql(q{INSERT INTO invitetomedia.tenants (name) VALUES ('globex') RETURNING tenant_id});
ok($a ne $b && $a > 0 && $b > 0, "two tenants: $a and $b");

run_sql(qq{
INSERT INTO invitetomedia.sites (site_id, tenant_id, enabled, link_base_url) VALUES
    ('acme-kms', $a, true, 'https://kms.acme.example/i/'),
    ('acme-canvas', $a, true, 'https://canvas.acme.example/i/'),
    ('globex-kms', $b, true, 'https://kms.globex.example/i/');
UPDATE invitetomedia.tenants SET default_site_id = 'acme-kms' WHERE tenant_id = $a;
UPDATE invitetomedia.tenants SET default_site_id = 'globex-kms' WHERE tenant_id = $b;
INSERT INTO invitetomedia.users (tenant_id, user_id, email, first_name, last_name, role) VALUES
    ($a, 'owner', 'owner\@acme.example', 'Ann', 'Acme', 'admin'),
    ($b, 'owner', 'owner\@globex.example', 'Gus', 'Globex', 'admin');
INSERT INTO invitetomedia.media (tenant_id, media_id, media_type, title, owner_id) VALUES
    ($a, 'vid', 'webcast', 'Acme all-hands', 'owner'),
    ($b, 'vid', 'webcast', 'Globex all-hands', 'owner');
INSERT INTO invitetomedia.email_templates (tenant_id, site_id, name, subject, body) VALUES
    ($a, 'acme-kms', 'invite', 'Acme: {MEDIA_TITLE}', 'Open {URL}');
UPDATE invitetomedia.sites SET invite_email_template = 'invite' WHERE site_id = 'acme-kms';
CREATE ROLE app_a; CREATE ROLE app_b; CREATE ROLE app_x;
INSERT INTO invitetomedia.tenant_roles (role_name, tenant_id) VALUES ('app_a', $a), ('app_b', $b);
GRANT USAGE ON SCHEMA invitetomedia TO app_a, app_b, app_x;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA invitetomedia TO app_a, app_b, app_x;
});

# 1: links and their sites
my $mk = q{SELECT invite_id || ' ' || token || ' ' || url FROM invitetomedia.};
my ($id1, $tok1, $url1) = split / /,
  as('app_a', $mk . q{invite_create_at('acme-kms', 'vid', 'owner', 'x@a.example', 'Xena', 'Ax')});
like($url1, qr{^https://kms\.acme\.example/i/itm_}, '1: the link carries its site\'s base URL');
my ($id2, $tok2, $url2) = split / /,
  as('app_a', $mk . q{invite_create('vid', 'owner', 'y@a.example', 'Yul', 'Ay')});
like($url2, qr{^https://kms\.acme\.example/i/}, '1: the 1.x signature uses the default site');
my ($id3, $tok3, $url3) = split / /,
  as('app_a', $mk . q{invite_create_at('acme-canvas', 'vid', 'owner', 'z@a.example', 'Zed', 'Az')});
like($url3, qr{^https://canvas\.acme\.example/i/}, '1: a second site of the tenant');
is(run_sql(qq{SELECT site_id FROM invitetomedia.invites WHERE tenant_id = $a AND invite_id = $id3}),
	'acme-canvas', '1: the link belongs to its site');

# 2: across tenants
is(as('app_b', qq{SELECT status FROM invitetomedia.invite_consume_at('globex-kms', '$tok1', 'x\@a.example')}),
	'not_found', '2: acme\'s token at globex\'s site: not_found');
is(as('app_b', qq{SELECT status FROM invitetomedia.invite_check('$tok1')}),
	'not_found', '2: invite_check of acme\'s token by globex: not_found');
like(try_as('app_b', qq{SELECT * FROM invitetomedia.invite_consume_at('acme-kms', '$tok1', 'x\@a.example')}),
	qr/^42704 site "acme-kms" does not exist/, '2: acme\'s site named by globex: does not exist');
like(try_as('app_b', qq{SELECT invitetomedia.invite_revoke($id1, 'owner')}),
	qr/^42704 invite $id1 does not exist/, '2: acme\'s link id revoked by globex: does not exist');
like(try_as('app_b', qq{SELECT * FROM invitetomedia.invite_resend($id1, 'owner', false)}),
	qr/^42704 invite $id1 does not exist/, '2: acme\'s link id resent by globex: does not exist');
is(run_sql(qq{SELECT revoked_at IS NULL FROM invitetomedia.invites WHERE tenant_id = $a AND invite_id = $id1}),
	't', '2: acme\'s link is untouched');

# 3: across sites of one tenant
is(as('app_a', qq{SELECT status FROM invitetomedia.invite_consume_at('acme-canvas', '$tok1', 'x\@a.example')}),
	'not_found', '3: a link of acme-kms at acme-canvas: not_found');

# 4: the use
is(as('app_a', qq{SELECT status || ' ' || user_id FROM invitetomedia.invite_consume_at('acme-kms', '$tok1', 'x\@a.example')}),
	'ok x@a.example', '4: the use at its site: ok, with the invitee\'s user');
is(run_sql(qq{SELECT string_agg(tenant_id::text, ',') FROM invitetomedia.users WHERE user_id = 'x\@a.example'}),
	$a, '4: the new user is acme\'s alone');
is(run_sql(qq{SELECT count(*) FROM invitetomedia.redemptions WHERE tenant_id = $a AND invite_id = $id1 AND status = 'ok'}),
	'1', '4: one ok record, in acme');

# 5: a disabled site
run_sql(q{UPDATE invitetomedia.sites SET enabled = false WHERE site_id = 'acme-kms'});
is(as('app_a', qq{SELECT status FROM invitetomedia.invite_consume('$tok2', 'y\@a.example')}),
	'disabled', '5: a link of a disabled site: disabled');
is(as('app_a', qq{SELECT status FROM invitetomedia.invite_consume_at('acme-canvas', '$tok3', 'z\@a.example')}),
	'ok', '5: the tenant\'s other site goes on');
like(try_as('app_a', q{SELECT * FROM invitetomedia.invite_create_at('acme-kms', 'vid', 'owner', 'w@a.example', 'W', 'A')}),
	qr/^55000 invitetomedia is disabled/, '5: no new link at the disabled site');
run_sql(q{UPDATE invitetomedia.sites SET enabled = true WHERE site_id = 'acme-kms'});

# 6: mail
my ($id6) = split / /,
  as('app_a', $mk . q{invite_create_at('acme-kms', 'vid', 'owner', 'm@a.example', 'Mo', 'Am', 'viewer', true)});
is(run_sql(qq{SELECT tenant_id || ' ' || site_id || ' ' || subject FROM invitetomedia.outbox WHERE invite_id = $id6}),
	"$a acme-kms Acme: Acme all-hands", '6: the mail is in its tenant\'s and site\'s outbox, with the site\'s template');

# 7: an unmapped role acts for the default tenant
like(try_as('app_x', q{SELECT * FROM invitetomedia.invite_create('vid', 'owner', 'q@a.example', 'Q', 'A')}),
	qr/^55000 invitetomedia is disabled/, '7: an unmapped role acts for the default tenant (disabled)');

# 8: purge
as('app_a', qq{SELECT invitetomedia.invite_revoke($id2, 'owner')});
run_sql(qq{UPDATE invitetomedia.invites SET revoked_at = now() - interval '90 days' WHERE tenant_id = $a AND invite_id = $id2});
is(as('app_b', q{SELECT invitetomedia.invite_purge('30 days')}), '0', '8: globex purges none of acme\'s links');
is(as('app_a', q{SELECT invitetomedia.invite_purge('30 days')}), '1', '8: acme purges its own');

# 9: drawn ids
my ($idb) = split / /,
  as('app_b', $mk . q{invite_create('vid', 'owner', 'x@b.example', 'Xi', 'Bee')});
ok(abs($idb - $id6) > 1_000_000, '9: ids are drawn, not counted');
is(as('app_b', qq{SELECT status FROM invitetomedia.invite_consume('$tok1', 'x\@a.example')}),
	'not_found', '9: globex still finds no acme token');

# 10: 1.x writers of the directory
run_sql(q{GRANT INSERT, SELECT ON invitetomedia.users, invitetomedia.email_templates TO app_b, app_x});
as('app_b', q{INSERT INTO invitetomedia.users (user_id, email, role) VALUES ('sync1', 'sync1@globex.example', 'viewer')});
is(run_sql(q{SELECT tenant_id FROM invitetomedia.users WHERE user_id = 'sync1'}), $b,
	'10: a directory row written without a tenant is the writing role\'s tenant\'s');
as('app_b', q{INSERT INTO invitetomedia.email_templates (name, subject, body) VALUES ('t2', 'Hi', 'Go {URL}')});
is(run_sql(q{SELECT tenant_id || ' ' || site_id FROM invitetomedia.email_templates WHERE name = 't2'}),
	"$b globex-kms", '10: a template without a site is the default site\'s');
like(try_as('app_b', qq{INSERT INTO invitetomedia.users (tenant_id, user_id) VALUES ($a, 'sneak')}),
	qr/^42501 /, '10: a row for another tenant is refused');
run_sql(q{UPDATE invitetomedia.tenants SET is_default = false});
like(try_as('app_x', q{INSERT INTO invitetomedia.users (user_id) VALUES ('nobody')}),
	qr/^42501 new row violates row-level security policy/, '10: a role bound to no tenant writes nothing');
run_sql(q{UPDATE invitetomedia.tenants SET is_default = true WHERE tenant_id = 1});

# 11: guest links
my ($gid, $gtok) = split / /,
  as('app_a', q{SELECT guest_link_id || ' ' || token FROM invitetomedia.guest_link_create_at('acme-kms', 'vid', 'owner', 'Attendees')});
ok($gtok =~ /^itg_/, '11: a guest link made at a site');
is(as('app_b', qq{SELECT status FROM invitetomedia.guest_link_join_at('globex-kms', '$gtok', 'g\@x.example', 'G', 'X')}),
	'not_found', '11: at another tenant\'s site: not_found');
is(as('app_a', qq{SELECT status FROM invitetomedia.guest_link_join_at('acme-canvas', '$gtok', 'g\@x.example', 'G', 'X')}),
	'not_found', '11: at another site of its tenant: not_found');
is(as('app_a', qq{SELECT status || ' ' || (user_id IS NULL) || ' ' || (join_id IS NOT NULL) FROM invitetomedia.guest_link_join_at('acme-kms', '$gtok', 'g\@x.example', 'G', 'X', 'dev1')}),
	'ok true true', '11: at its own site: ok, a join and no user');
is(as('app_a', qq{SELECT status FROM invitetomedia.guest_link_join('$gtok', 'g\@x.example', 'G', 'X', 'dev1')}),
	'rejoin', '11: the same device again, through the 1.x signature (the default site): rejoin');
is(run_sql(qq{SELECT string_agg(tenant_id || '/' || site_id || '/' || status, ',' ORDER BY joined_at) FROM invitetomedia.guest_link_joins WHERE guest_link_id = $gid}),
	"$a/acme-kms/ok,$a/acme-kms/rejoin", '11: the joins are recorded in the link\'s tenant and site');
like(try_as('app_b', qq{SELECT invitetomedia.guest_link_revoke($gid, 'owner')}),
	qr/^42704 guest link $gid does not exist/, '11: another tenant cannot revoke it');
is(as('app_a', qq{SELECT invitetomedia.guest_link_revoke_at('acme-kms', $gid, 'owner')}),
	't', '11: its own tenant revokes it at its site');

# 12: the binding's cache does not stand in for a privilege
run_sql(q{CREATE ROLE lowly; GRANT USAGE ON SCHEMA invitetomedia TO lowly});
is(run_sql(qq{SET ROLE app_a; SELECT status FROM invitetomedia.invite_check('$tok3');
	RESET ROLE; ALTER FUNCTION invitetomedia.invite_check(text) OWNER TO lowly;
	SET ROLE app_a; SELECT public.try(\$\$SELECT * FROM invitetomedia.invite_check('$tok3')\$\$);
	RESET ROLE; ALTER FUNCTION invitetomedia.invite_check(text) OWNER TO CURRENT_USER;}),
	"not_found\n42501 permission denied for table tenant_roles",
	'12: in one session, a cached binding and then an owner that may not read tenant_roles: refused');

# 13: the sites' cache follows the table
run_sql(qq{SELECT invitetomedia.site_create($a, 'acme-tmp')});
is(run_sql(qq{SET ROLE app_a; SELECT status FROM invitetomedia.invite_check_at('acme-tmp', '$tok3');
	RESET ROLE; SELECT 'dropped' FROM (SELECT count(*) FROM invitetomedia.site_drop('acme-tmp')) d;
	SET ROLE app_a; SELECT public.try(\$\$SELECT * FROM invitetomedia.invite_check_at('acme-tmp', '$tok3')\$\$);}),
	"not_found\ndropped\n42704 site \"acme-tmp\" does not exist",
	'13: a site dropped after a call named it: the next call in the session finds it gone');

done_testing();
