# Streaming replication: links consumed on the primary are seen as consumed
# on a standby and stay consumed after the standby is promoted; on the
# standby invite_check works, while invite_consume (and every other writing
# API function) fails with a clear read-only error (SQLSTATE 25006) and the
# standby keeps running; after promotion unconsumed links consume there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->start;

$primary->safe_psql('postgres', q{
CREATE EXTENSION invitetomedia CASCADE;
INSERT INTO invitetomedia.email_templates VALUES ('t', 'Invitation', 'Open {URL}');
UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 't';
INSERT INTO invitetomedia.users VALUES ('owner', 'owner@site.example', 'O', 'Owner', 'admin');
INSERT INTO invitetomedia.media VALUES ('m1', 'video', 'Film', 'owner');
});

sub create
{
	my ($node, $email, $reuse) = @_;
	$node->safe_psql('postgres',
		"UPDATE invitetomedia.settings SET link_reusability = $reuse");
	my $r = $node->safe_psql('postgres',
		"SELECT invite_id || ' ' || token FROM invitetomedia.invite_create("
		  . "'m1', 'owner', '$email', 'First', 'Last', 'viewer', true)");
	return split / /, $r;
}

sub status
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', "SELECT status FROM $sql");
}

my ($id_used, $tok_used) = create($primary, 'used@new.example', 1);
my ($id_two, $tok_two) = create($primary, 'two@new.example', 2);
my ($id_free, $tok_free) = create($primary, 'free@new.example', 1);

$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;

# consumed on the primary after the standby was made: replicated by WAL
is(status($primary, "invitetomedia.invite_consume('$tok_used', 'used\@new.example')"),
	'ok', 'primary: single-use link consumed');
is(status($primary, "invitetomedia.invite_consume('$tok_two', 'two\@new.example')"),
	'ok', 'primary: 2-use link used once');
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is(status($standby, "invitetomedia.invite_check('$tok_used')"), 'exhausted',
	'standby: invite_check shows the consumed link as exhausted');
is( $standby->safe_psql('postgres',
		"SELECT status || ' ' || uses_left || ' ' || media_title FROM invitetomedia.invite_check('$tok_two')"),
	'ok 1 Film', 'standby: invite_check shows one use left of the 2-use link');
is(status($standby, "invitetomedia.invite_check('$tok_free')"), 'ok',
	'standby: invite_check of an unused link');
is(status($standby, "invitetomedia.invite_check('itm_nonsense')"), 'not_found',
	'standby: invite_check of a malformed token');
is( $standby->safe_psql('postgres',
		"SELECT use_count FROM invitetomedia.invites WHERE invite_id = $id_used"),
	'1', 'standby: use_count replicated');

# every writing function refuses with 25006 and a clear message
my %writers = (
	'invite_consume' => "SELECT * FROM invitetomedia.invite_consume('$tok_free', 'free\@new.example')",
	'invite_consume with device' =>
	  "SELECT * FROM invitetomedia.invite_consume('$tok_free', 'free\@new.example', 'dev1')",
	'invite_create' =>
	  "SELECT * FROM invitetomedia.invite_create('m1', 'owner', 'x\@new.example', 'F', 'L')",
	'invite_revoke' => "SELECT invitetomedia.invite_revoke($id_free, 'owner')",
	'invite_purge' => "SELECT invitetomedia.invite_purge('0')",
);
for my $name (sort keys %writers)
{
	my ($stdout, $stderr);
	my $rc = $standby->psql('postgres', "\\set VERBOSITY verbose\n$writers{$name}",
		stdout => \$stdout, stderr => \$stderr);
	isnt($rc, 0, "standby: $name fails");
	like($stderr, qr/ERROR:  25006: cannot execute .* in a read-only transaction/,
		"standby: $name fails with SQLSTATE 25006 and a read-only message");
	unlike($stderr, qr/server closed the connection|terminating|PANIC/,
		"standby: $name does not crash a backend");
}
# a malformed token is refused before anything would be written
is(status($standby, "invitetomedia.invite_consume('itm_bad', 'free\@new.example')"),
	'not_found', 'standby: malformed token is not_found without writing');
is($standby->safe_psql('postgres', 'SELECT 1'), '1', 'standby still serves queries');
is(status($standby, "invitetomedia.invite_check('$tok_free')"), 'ok',
	'standby: the link it refused to consume is still unused');

# the primary sees nothing of the refused attempts
is( $primary->safe_psql('postgres',
		"SELECT use_count FROM invitetomedia.invites WHERE invite_id = $id_free"),
	'0', 'primary: the link refused on the standby is unused');

# fail over
$primary->stop;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'standby did not leave recovery';

is(status($standby, "invitetomedia.invite_consume('$tok_used', 'used\@new.example')"),
	'exhausted', 'promoted: link consumed on the old primary is exhausted');
is(status($standby, "invitetomedia.invite_consume('$tok_two', 'two\@new.example')"),
	'ok', 'promoted: the 2-use link has its second use');
is(status($standby, "invitetomedia.invite_consume('$tok_two', 'two\@new.example')"),
	'exhausted', 'promoted: and no third');
is(status($standby, "invitetomedia.invite_consume('$tok_free', 'free\@new.example')"),
	'ok', 'promoted: an unconsumed link consumes');
my ($id_new, $tok_new) = create($standby, 'new@new.example', 1);
# (2.0 draws ids at random: fresh is an id no link made on the old primary has)
like($id_new, qr/^[1-9][0-9]*$/, 'promoted: a new link gets an id');
is(scalar(grep { $_ eq $id_new } $id_used, $id_two, $id_free), 0,
	'promoted: a new link gets a fresh id');
is(status($standby, "invitetomedia.invite_consume('$tok_new', 'new\@new.example')"),
	'ok', 'promoted: a new link consumes');
is( $standby->safe_psql('postgres', q{
	SELECT count(*) FROM invitetomedia.invites i
	 WHERE i.use_count <> (SELECT count(*) FROM invitetomedia.redemptions r
	                        WHERE r.invite_id = i.invite_id AND r.status = 'ok')}),
	'0', 'promoted: use_count matches the ok redemptions');
is( $standby->safe_psql('postgres', q{
	SELECT count(*) FROM invitetomedia.invites i
	 WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.outbox o WHERE o.invite_id = i.invite_id)}),
	'0', 'promoted: every link has its message');

$standby->stop;
done_testing();
