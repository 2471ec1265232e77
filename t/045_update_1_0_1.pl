# The update from 1.0 to 1.0.1 on databases that hold what 1.0 allowed:
#  - a queued message whose subject holds a line break (a media title did)
#    is mended, so the new CHECK on the outbox holds;
#  - a template with {URL} in its subject, a link_base_url the token would
#    be glued onto, or two users whose addresses differ only in case
#    (distinct to a Turkish lower()), refuse the update with a hint and
#    change nothing; once mended, the update goes through;
#  - the sender role's grants follow email_claim, email_sent and
#    email_failed to their 1.0.1 forms and survive pg_dump and restore;
#  - the new library serves the database at 1.0 before the update and at
#    1.0.1 after it, in the same session.
# The updates here go to 1.0.1 by name (ALTER EXTENSION ... UPDATE TO
# '1.0.1'): a plain UPDATE goes on to the default version (1.1 and later;
# see t/040_upgrade.pl and t/046_update_1_1.pl).
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# the default version, from the tree
my $control = slurp_file(($ENV{ITM_SRCDIR} || '.') . '/invitetomedia.control');
$control =~ /^\s*default_version\s*=\s*'([^']+)'/m
  or BAIL_OUT('no default_version in invitetomedia.control');
my $default = $1;

my $node = PostgreSQL::Test::Cluster->new('update101');
$node->init;
$node->start;

sub at_1_0
{
	my ($db, @create_opts) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db @create_opts");
	$node->safe_psql($db, q{
		CREATE EXTENSION invitetomedia VERSION '1.0' CASCADE;
		INSERT INTO invitetomedia.users VALUES ('owner', 'owner@site.example', 'O', 'Owner', 'admin');
		INSERT INTO invitetomedia.media VALUES ('m1', 'webcast', 'Launch', 'owner');
		UPDATE invitetomedia.settings SET enabled = true, link_reusability = 3;
	});
	return;
}

sub update_error
{
	my ($db) = @_;
	my ($ret, $out, $err) = $node->psql($db, "ALTER EXTENSION invitetomedia UPDATE TO '1.0.1'",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $ret == 0 ? '' : $err;
}

sub version
{
	my ($db) = @_;
	return $node->safe_psql($db,
		"SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia'");
}

# -- a subject with a line break, queued under 1.0 -------------------------
at_1_0('subj');
my $tok = $node->safe_psql('subj', q{
	INSERT INTO invitetomedia.email_templates VALUES ('t', 'Join {MEDIA_TITLE}', 'Open {URL}');
	UPDATE invitetomedia.settings SET invite_email_template = 't';
	SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'guest@new.example', 'G', 'Uest', 'viewer', true);
});
# as 1.0's library wrote it (the new one would not)
$node->safe_psql('subj', q{UPDATE invitetomedia.outbox SET subject = E'Join Launch\r\nBcc: x@evil.example'});
is(update_error('subj'), '', 'an outbox with a line break in a subject updates');
is(version('subj'), '1.0.1', 'subj is at 1.0.1');
is($node->safe_psql('subj', 'SELECT subject FROM invitetomedia.outbox'),
	'Join Launch Bcc: x@evil.example', 'the queued subject is one line');
is($node->safe_psql('subj',
		"SELECT status FROM invitetomedia.invite_consume('$tok', 'guest\@new.example')"),
	'ok', 'the link made at 1.0 works after the update');
is($node->safe_psql('subj', 'SELECT count(*) FROM invitetomedia.email_claim()'),
	'1', 'its message is still due');

# -- {URL} in a template's subject ------------------------------------------
at_1_0('urlsubj');
$node->safe_psql('urlsubj',
	q{INSERT INTO invitetomedia.email_templates VALUES ('leaky', 'Your link {URL}', 'Open {URL}')});
my $err = update_error('urlsubj');
like($err, qr/23514.*email templates with \{URL\} in the subject: 'leaky'/s,
	'{URL} in a subject refuses the update (23514, names the template)');
like($err, qr/HINT:\s+Remove \{URL\} from those subjects/, '... with a hint');
is(version('urlsubj'), '1.0', '... and changes nothing');
# the update to the default version runs this script first: refused as well
my ($ret_plain, $out_plain, $err_plain) = $node->psql('urlsubj', 'ALTER EXTENSION invitetomedia UPDATE');
like($err_plain, qr/email templates with \{URL\} in the subject: 'leaky'/,
	'ALTER EXTENSION UPDATE (to the default version) is refused the same way');
is(version('urlsubj'), '1.0', '... and changes nothing either');
$node->safe_psql('urlsubj', q{UPDATE invitetomedia.email_templates SET subject = 'Your link'});
is(update_error('urlsubj'), '', 'once mended, the update goes through');

# -- a link_base_url the token is glued onto ---------------------------------
at_1_0('url');
$node->safe_psql('url',
	q{UPDATE invitetomedia.settings SET link_base_url = 'https://media.example.com/join'});
$err = update_error('url');
like($err, qr/23514.*link_base_url does not end in \/, =, \?, # or &: 'https:\/\/media.example.com\/join'/s,
	'a link_base_url without a final / refuses the update (23514)');
like($err, qr/HINT:\s+Add the missing \//, '... with a hint');
is(version('url'), '1.0', '... and changes nothing');
$node->safe_psql('url',
	q{UPDATE invitetomedia.settings SET link_base_url = 'https://media.example.com/join/'});
is(update_error('url'), '', 'once mended, the update goes through');

# -- users that differ only in ASCII case, in a Turkish database ------------
at_1_0('tr', q{TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'
			   LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR'});
# lower('INFO') is 'ınfo' here, so 1.0's index let both in
$node->safe_psql('tr', q{
	INSERT INTO invitetomedia.users VALUES ('u1', 'info@example.com', 'I', 'One', 'viewer'),
	                                       ('u2', 'INFO@example.com', 'I', 'Two', 'viewer');
});
$err = update_error('tr');
like($err, qr/23505.*differ only in letter case: 'info\@example.com'/s,
	'two users with one address in two cases refuse the update (23505)');
like($err, qr/HINT:\s+Merge or correct those users/, '... with a hint');
is(version('tr'), '1.0', '... and change nothing');
$node->safe_psql('tr', q{DELETE FROM invitetomedia.users WHERE user_id = 'u2'});
is(update_error('tr'), '', 'once merged, the update goes through');

# -- the sender's grants, across the update and a dump and restore ----------
$node->safe_psql('postgres', 'CREATE ROLE itm_sender LOGIN');
at_1_0('grants');
# the library serves 1.0 and then 1.0.1 in one session
my $session = q{
	SELECT status FROM invitetomedia.invite_consume(
	    (SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'a@new.example', 'A', 'B')), 'a@new.example');
	ALTER EXTENSION invitetomedia UPDATE TO '1.0.1';
	SELECT status FROM invitetomedia.invite_consume(
	    (SELECT token FROM invitetomedia.invite_create('m1', 'owner', 'b@new.example', 'A', 'B')), 'B@new.example');
};
$node->safe_psql('grants', q{
	GRANT USAGE ON SCHEMA invitetomedia TO itm_sender;
	GRANT EXECUTE ON FUNCTION invitetomedia.email_claim(integer, interval),
	    invitetomedia.email_sent(bigint), invitetomedia.email_failed(bigint, text) TO itm_sender;
});
is($node->safe_psql('grants', $session), "ok\nok",
	'one session consumes at 1.0, updates, and consumes at 1.0.1');
my $can = q{
	SELECT string_agg(p.oid::regprocedure::text || '=' ||
	                  has_function_privilege('itm_sender', p.oid, 'EXECUTE'), ' ' ORDER BY p.oid::regprocedure::text)
	  FROM pg_proc p
	 WHERE p.pronamespace = 'invitetomedia'::regnamespace AND p.proname IN ('email_claim', 'email_sent', 'email_failed', 'email_release')};
my $expected =
	'invitetomedia.email_claim(integer,interval)=true '
  . 'invitetomedia.email_failed(bigint,text)=true '
  . 'invitetomedia.email_failed(bigint,text,integer,boolean)=true '
  . 'invitetomedia.email_release(bigint,integer)=true '
  . 'invitetomedia.email_sent(bigint)=true '
  . 'invitetomedia.email_sent(bigint,integer)=true';
is($node->safe_psql('grants', $can), $expected,
	'the sender may call every email function after the update');

my $dump = $node->basedir . '/grants.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('grants') ],
	'pg_dump of the updated database');
# A dump names no extension version and a restore creates the default one
# (1.1 and later).  To restore at 1.0.1, a DBA creates the extension at
# 1.0.1 first (with its schema) and restores everything but the schema; the
# dump's CREATE EXTENSION IF NOT EXISTS then leaves the version as it is.
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->safe_psql('restored', "CREATE EXTENSION invitetomedia VERSION '1.0.1' CASCADE");
my ($toc, $toc_err);
IPC::Run::run([ 'pg_restore', '-l', $dump ], '>', \$toc, '2>', \$toc_err)
  or die "pg_restore -l: $toc_err";
my @entries = split /\n/, $toc;
my $schema_entries = grep { /^\d+; \d+ \d+ SCHEMA - invitetomedia / } @entries;
is($schema_entries, 1, 'the dump creates the schema once');
my $list = $node->basedir . '/grants.list';
open my $lf, '>', $list or die "$list: $!";
print $lf map { "$_\n" } grep { !/^\d+; \d+ \d+ SCHEMA - invitetomedia / } @entries;
close $lf;
$node->command_ok([ 'pg_restore', '--exit-on-error', '-L', $list, '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a new database with the extension at 1.0.1');
is($node->safe_psql('restored', $can), $expected,
	'the sender keeps every email function after dump and restore');
is(version('restored'), '1.0.1', 'the restored database is at 1.0.1');

# and on to the default version (1.1 leaves the email functions as 1.0.1
# made them)
$node->safe_psql('restored', 'ALTER EXTENSION invitetomedia UPDATE');
is(version('restored'), $default, "the restored database updates to $default");
is($node->safe_psql('restored', $can), $expected,
	"the sender keeps every email function after the update to $default");

$node->stop;
done_testing();
