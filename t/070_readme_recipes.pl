# The README is executable documentation.  Every ```sql block in README.md
# runs here, in the README's order, on a fresh database (a README edit that
# breaks one fails this test), and the roles the recipes make can do, and
# cannot do, what the text says:
#  - a block marked <!-- readme-test: signature --> is a function's
#    signature: it must match the installed function (arguments, defaults,
#    result);
#  - every other block runs as written, with psql, stopping at the first
#    error.  The only thing made beforehand is the application's own table
#    app.users, which the directory-sync example names;
#  - blocks marked <!-- readme-test: NAME --> are the role recipes; after
#    all blocks ran, each role is tried:
#    directory-sync-role, directory-sync-trigger: the sync role keeps
#    invitetomedia.users in step with app.users through the sample trigger
#    (insert, update, a changed id, delete) and may run UPDATE ... WHERE,
#    DELETE ... WHERE and INSERT ... ON CONFLICT DO UPDATE itself; it cannot
#    read invites or change settings;
#    application-role: creates, checks, consumes and revokes links; cannot
#    read invites, purge or claim emails;
#    maintenance-role: purges; cannot create links;
#    (2.0) "Setting up a tenant" made the tenant, its site and its role;
#    owner-role (1.1): reads the status views; cannot read the tables
#    behind them or call the API;
#    sender-role: claims, confirms and hands back emails (both call forms);
#    cannot read the outbox.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $srcdir = $ENV{ITM_SRCDIR} || '.';
my $readme = slurp_file("$srcdir/README.md");

# every sql block: [marker or '', text, line]
my @blocks;
while ($readme =~ /(?:<!-- readme-test: ([\w-]+) -->\s*\n)?[ \t]*```sql\n(.*?)\n[ \t]*```/sg)
{
	my ($marker, $sql) = ($1 // '', $2);
	my $line = 1 + (substr($readme, 0, $-[0]) =~ tr/\n//);
	push @blocks, [ $marker, $sql, $line ];
}
ok(@blocks >= 10, scalar(@blocks) . ' sql blocks in the README');
my %recipe = map { $_->[0] => $_->[1] } grep { $_->[0] ne '' } @blocks;
for my $name (qw(directory-sync-role directory-sync-trigger application-role
	maintenance-role sender-role owner-role))
{
	ok(exists $recipe{$name}, "README has the recipe $name");
}

my $node = PostgreSQL::Test::Cluster->new('readme');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE site');
# the application's own table the sample trigger mirrors
$node->safe_psql('site', q{
	CREATE SCHEMA app;
	CREATE TABLE app.users (id text PRIMARY KEY, email text, first_name text,
	                        last_name text, role text);
});

sub normalize
{
	my ($t) = @_;
	$t =~ s/::[a-z ]+\b//g;    # the catalog writes 'viewer'::text
	$t =~ s/timestamp with time zone/timestamptz/g;
	$t =~ s/\s+/ /g;
	$t =~ s/\( /(/g;
	$t =~ s/ \)/)/g;
	$t =~ s/^ | $//g;
	return $t;
}

for my $b (@blocks)
{
	my ($marker, $sql, $line) = @$b;
	if ($marker eq 'signature')
	{
		while ($sql =~ /(\w+)\((.*?)\)\s*RETURNS\s+(TABLE\(.*?\)|\w+)/sg)
		{
			my ($fn, $args, $result) = ($1, $2, $3);
			my $catalog = $node->safe_psql('site', qq{
				SELECT string_agg(pg_get_function_arguments(p.oid) || ') RETURNS ' ||
				                  pg_get_function_result(p.oid), ' | ')
				  FROM pg_proc p
				 WHERE p.pronamespace = 'invitetomedia'::regnamespace AND p.proname = '$fn'});
			my @forms = map { normalize("$fn($_") } split / \| /, $catalog;
			ok((grep { $_ eq normalize("$fn($args) RETURNS $result") } @forms),
				"README line $line: the signature of $fn is the installed one")
			  or diag("README: " . normalize("$fn($args) RETURNS $result") . "\ncatalog: @forms");
		}
		next;
	}
	my ($ret, $out, $err) = $node->psql('site', $sql, on_error_stop => 1);
	is($ret, 0, "README line $line: the block runs as written" . ($marker ? " ($marker)" : ''))
	  or diag($err);
}

# what the Getting started block made
is($node->safe_psql('site',
		q{SELECT status FROM invitetomedia.redemptions ORDER BY redemption_id LIMIT 1}),
	'ok', 'Getting started: the guest consumed her link');
# what "Setting up a tenant" (Configuration, 2.0) made: a second tenant,
# its site, the default one, configured as the block says, and a role that
# acts for it; the default tenant's site is untouched
is(value(q{SELECT t.tenant_id || ' ' || t.default_site_id || ' ' || s.enabled || ' ' || s.link_duration
             FROM invitetomedia.tenants t JOIN invitetomedia.sites s ON s.site_id = t.default_site_id
            WHERE t.name = 'acme'}),
	'2 acme-kms true 2880', 'tenants: the recipe made tenant 2 with its enabled default site');
# (the recipe grants acme_app nothing yet: the schema, to ask tenant())
$node->safe_psql('site', 'GRANT USAGE ON SCHEMA invitetomedia TO acme_app');
is(value(q{SET ROLE acme_app; SELECT invitetomedia.tenant()}), '2',
	'tenants: the recipe\'s role acts for the new tenant');
is(value(q{SELECT count(*) FROM invitetomedia.sites WHERE tenant_id = 1}), '1',
	'tenants: the default tenant keeps its one site');
# the application writes its table as the sync role; the sender needs a template
$node->safe_psql('site', q{
	GRANT USAGE ON SCHEMA app TO media_sync;
	GRANT SELECT, INSERT, UPDATE, DELETE ON app.users TO media_sync;
	INSERT INTO invitetomedia.email_templates VALUES ('t', 'Invitation', 'Open {URL}');
	UPDATE invitetomedia.settings SET invite_email_template = 't';
});

# runs $sql as $role; returns '' on success or the SQLSTATE of the error
sub as_role
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('site',
		"SET ROLE $role;\n$sql",
		on_error_stop => 1,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return '' if $ret == 0;
	return $err =~ /ERROR:\s+([0-9A-Z]{5})/ ? $1 : "failed: $err";
}

sub value
{
	my ($sql) = @_;
	return $node->safe_psql('site', $sql);
}

# -- directory sync ----------------------------------------------------------
is(as_role('media_sync', q{INSERT INTO app.users VALUES ('g1', 'gina@site.example', 'Gina', 'G', 'viewer')}),
	'', 'sync: an application insert is mirrored');
is(value(q{SELECT email FROM invitetomedia.users WHERE user_id = 'g1'}), 'gina@site.example',
	'sync: the user is in the directory');
is(as_role('media_sync', q{UPDATE app.users SET email = 'gina@new.example', role = 'admin' WHERE id = 'g1'}),
	'', 'sync: an application update is mirrored (ON CONFLICT DO UPDATE)');
is(value(q{SELECT email || ' ' || role FROM invitetomedia.users WHERE user_id = 'g1'}),
	'gina@new.example admin', 'sync: the directory has the new values');
is(as_role('media_sync', q{UPDATE app.users SET id = 'g2' WHERE id = 'g1'}),
	'', 'sync: a changed user id is mirrored');
is(value(q{SELECT string_agg(user_id, ',') FROM invitetomedia.users WHERE email = 'gina@new.example'}),
	'g2', 'sync: the directory row follows the new id');
is(as_role('media_sync', q{DELETE FROM app.users WHERE id = 'g2'}), '',
	'sync: an application delete is mirrored');
is(value(q{SELECT count(*) FROM invitetomedia.users WHERE user_id IN ('g1', 'g2')}), '0',
	'sync: the user is gone from the directory');
# issue 18, A3: an address an anonymous user holds (the Getting started
# guest's first use created one; 1.1's guest joins did too) is taken over
# by the person's sign-up: the recipe's sync succeeds, the anonymous user
# gives way
is(value(q{SELECT user_id || ' ' || role FROM invitetomedia.users WHERE lower(email) = 'guest@outside.example'}),
	'guest@outside.example anonymous', 'sync: the guest of Getting started is an anonymous user');
$node->safe_psql('site', q{INSERT INTO invitetomedia.users VALUES
	('squat@outside.example', 'Squat@Outside.example', 'S', 'Q', 'anonymous')});
is(as_role('media_sync', q{INSERT INTO app.users VALUES ('gina-7', 'Guest@Outside.example', 'Gina', 'Guest', 'viewer')}),
	'', 'sync: a sign-up with the address of an anonymous user is mirrored');
is(as_role('media_sync', q{INSERT INTO app.users VALUES ('sq-1', 'squat@outside.example', 'Real', 'Person', 'viewer')}),
	'', 'sync: ... and with the address of an anonymous user 1.1 made for a guest');
is(value(q{SELECT string_agg(user_id || ' ' || role, ',' ORDER BY user_id) FROM invitetomedia.users
            WHERE lower(email) IN ('guest@outside.example', 'squat@outside.example')}),
	'gina-7 viewer,sq-1 viewer', 'sync: the sign-ups hold the addresses, the anonymous users are gone');
is(as_role('media_sync', q{INSERT INTO app.users VALUES ('other-9', 'SQUAT@outside.example', 'O', 'T', 'viewer')}),
	'23505', 'sync: an address a real user holds is still refused to another');
is(as_role('media_sync', q{
	INSERT INTO invitetomedia.media VALUES ('m2', 'video', 'Film', 'olivia')
	    ON CONFLICT (tenant_id, media_id) DO UPDATE SET title = EXCLUDED.title;
	UPDATE invitetomedia.media SET title = 'Film 2' WHERE media_id = 'm2';
	INSERT INTO invitetomedia.media_collaborators VALUES ('m2', 'olivia', 'co_editor');
	DELETE FROM invitetomedia.media_collaborators WHERE media_id = 'm2';
	INSERT INTO invitetomedia.group_members VALUES ('g', 'olivia');
	DELETE FROM invitetomedia.group_members WHERE group_id = 'g';
	DELETE FROM invitetomedia.media WHERE media_id = 'm2';
}), '', 'sync: writes every directory table directly');
is(as_role('media_sync', 'SELECT count(*) FROM invitetomedia.invites'), '42501',
	'sync: cannot read invites');
is(as_role('media_sync', 'UPDATE invitetomedia.settings SET enabled = false'), '42501',
	'sync: cannot change settings');

# -- the application -------------------------------------------------------
my $made = $node->safe_psql('site', q{
	SET ROLE media_app;
	SELECT invite_id || ' ' || token FROM invitetomedia.invite_create('0_launch', 'olivia',
	       'guest@outside.example', 'Gina', 'Guest', 'speaker', true);
});
my ($invite_id, $token) = split / /, $made;
like($token, qr/^itm_[A-Za-z0-9_-]{48}$/, 'app: creates a link');
is($node->safe_psql('site', "SET ROLE media_app; SELECT status FROM invitetomedia.invite_check('$token')"),
	'ok', 'app: checks it');
is($node->safe_psql('site',
		"SET ROLE media_app; SELECT status FROM invitetomedia.invite_consume('$token', 'Guest\@Outside.example', 'device-1')"),
	'ok', 'app: consumes it');
is($node->safe_psql('site', "SET ROLE media_app; SELECT invitetomedia.invite_revoke($invite_id, 'olivia')"),
	't', 'app: revokes it');
# 1.1: resend, guest links, revoke-all
my $second = $node->safe_psql('site', q{
	SET ROLE media_app;
	SELECT invite_id FROM invitetomedia.invite_create('0_launch', 'olivia',
	       'second@outside.example', 'Sam', 'Second', 'viewer', false, now() + interval '1 hour');
});
like($node->safe_psql('site',
		"SET ROLE media_app; SELECT token FROM invitetomedia.invite_resend($second, 'olivia', false)"),
	qr/^itm_/, 'app: resends a link');
my $guest = $node->safe_psql('site', q{
	SET ROLE media_app;
	SELECT guest_link_id || ' ' || token FROM invitetomedia.guest_link_create('0_launch', 'olivia', 'Audience');
});
my ($guest_id, $guest_token) = split / /, $guest;
like($guest_token, qr/^itg_/, 'app: creates a guest link');
is($node->safe_psql('site',
		"SET ROLE media_app; SELECT status FROM invitetomedia.guest_link_join('$guest_token', 'viewer\@outside.example', 'Vic', 'Viewer', 'device-2')"),
	'ok', 'app: a guest joins');
is($node->safe_psql('site', "SET ROLE media_app; SELECT invitetomedia.guest_link_revoke($guest_id, 'olivia')"),
	't', 'app: revokes the guest link');
# left unrevoked: Getting started's invite and the resent one
is($node->safe_psql('site', "SET ROLE media_app; SELECT invitetomedia.invite_revoke_all('0_launch', 'olivia')"),
	'2', 'app: revokes every link of the media');
is(as_role('media_app', 'SELECT * FROM invitetomedia.invite_status'), '42501',
	'app: cannot read the status views');
is(as_role('media_app', 'SELECT token_hash FROM invitetomedia.invites'), '42501',
	'app: cannot read token hashes');
is(as_role('media_app', 'SELECT body FROM invitetomedia.outbox'), '42501', 'app: cannot read bodies');
is(as_role('media_app', q{SELECT invitetomedia.invite_purge('0')}), '42501', 'app: cannot purge');
is(as_role('media_app', 'SELECT * FROM invitetomedia.email_claim()'), '42501', 'app: cannot claim emails');
is(as_role('media_app', 'UPDATE invitetomedia.settings SET enabled = false'), '42501',
	'app: cannot change settings');

# -- the owner-facing role (1.1) --------------------------------------------
is(value(q{SET ROLE media_owner_ui; SELECT count(*) > 0 FROM invitetomedia.invite_status}), 't',
	'owner ui: reads invite_status');
is(value(q{SET ROLE media_owner_ui; SELECT string_agg(state, ',') FROM invitetomedia.guest_link_status}),
	'revoked', 'owner ui: reads guest_link_status');
is(value(q{SET ROLE media_owner_ui; SELECT string_agg(status || ' ' || email, ',') FROM invitetomedia.guest_joins}),
	'ok viewer@outside.example', 'owner ui: reads guest_joins');
is(as_role('media_owner_ui', 'SELECT count(*) FROM invitetomedia.invites'), '42501',
	'owner ui: cannot read the invites table');
is(as_role('media_owner_ui', 'SELECT count(*) FROM invitetomedia.guest_link_joins'), '42501',
	'owner ui: cannot read the join records table');
is(as_role('media_owner_ui',
		q{SELECT * FROM invitetomedia.invite_create('0_launch', 'olivia', 'x@outside.example', 'X', 'Y')}),
	'42501', 'owner ui: cannot create links');

# -- maintenance -----------------------------------------------------------
is(as_role('media_maint', q{SELECT invitetomedia.invite_purge('0')}), '', 'maint: purges');
is(value('SELECT count(*) FROM invitetomedia.invites'), '0', 'maint: the revoked links are purged');
is(value('SELECT count(*) FROM invitetomedia.guest_links'), '0', 'maint: the revoked guest link is purged');
is(as_role('media_maint', q{SELECT * FROM invitetomedia.invite_create('0_launch', 'olivia', 'x@outside.example', 'X', 'Y')}),
	'42501', 'maint: cannot create links');

# -- the sender ------------------------------------------------------------
$node->safe_psql('site', q{
	SELECT count(*) FROM invitetomedia.invite_create('0_launch', 'olivia', 'a@outside.example', 'A', 'B', 'viewer', true);
	SELECT count(*) FROM invitetomedia.invite_create('0_launch', 'olivia', 'b@outside.example', 'A', 'B', 'viewer', true);
});
my $claimed = $node->safe_psql('site',
	q{SET ROLE invitetomedia_sender; SELECT string_agg(message_id || ':' || claim_no, ' ' ORDER BY message_id) FROM invitetomedia.email_claim()});
my @claims = map { [ split /:/ ] } split / /, $claimed;
is(scalar(@claims), 2, 'sender: claims the due messages');
is($node->safe_psql('site',
		"SET ROLE invitetomedia_sender; SELECT invitetomedia.email_sent($claims[0][0], $claims[0][1])"),
	't', 'sender: confirms with the claim number');
is($node->safe_psql('site',
		"SET ROLE invitetomedia_sender; SELECT invitetomedia.email_failed($claims[1][0], 'relay down')"),
	'pending', 'sender: reports a failure with the 1.0 form');
my $third = $node->safe_psql('site', q{
	SELECT count(*) FROM invitetomedia.invite_create('0_launch', 'olivia', 'c@outside.example', 'A', 'B', 'viewer', true);
	SET ROLE invitetomedia_sender;
	SELECT message_id || ':' || claim_no FROM invitetomedia.email_claim();
});
my ($mid, $cno) = split /:/, (split /\n/, $third)[-1];
is($node->safe_psql('site',
		"SET ROLE invitetomedia_sender; SELECT invitetomedia.email_release($mid, $cno)"),
	't', 'sender: hands back a message it did not attempt');
is(as_role('invitetomedia_sender', 'SELECT body FROM invitetomedia.outbox'), '42501',
	'sender: cannot read the outbox');
is(as_role('invitetomedia_sender',
		q{SELECT * FROM invitetomedia.invite_create('0_launch', 'olivia', 'x@outside.example', 'X', 'Y')}),
	'42501', 'sender: cannot create links');

$node->stop;
done_testing();
