# t/060_claims.pl - claims with an identity (release 1.0.1)
#
# A sender whose lease ran out must not disturb the sender that claimed the
# message after it.  From 1.0.1 on, email_claim returns claim_no, the claim's
# identity, and email_sent(message_id, claim_no) and
# email_failed(message_id, error, claim_no) change nothing for a claim that
# is no longer current.  The same release gives each message a key for its
# Message-ID (message_key), email_release to hand back a claim not
# attempted, and email_failed(..., permanent).
#
#  1. the SQL API with two "senders" on two connections and an expired lease
#  2. the real sender against a 1.0.1 database (claim-aware confirmations)
#     and against a database created at 1.0 (the 1.0 forms), then that
#     database updated under the running sender
#  3. two real senders, one slowed past its lease by a failing sendmail: its
#     late failure leaves the message to the other, and a third sender finds
#     nothing to do
#  4. a sender stopped with SIGTERM does not hand back a message that
#     another sender claimed after its lease ran out
use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run ();
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/lib";
use ItmVersion qw(default_version);

my $top = abs_path(File::Spec->catdir(dirname(__FILE__), '..'));
my $fake = "$top/sender/test/fake-sendmail";

# $ITM_SENDER if set, else the sender built in the tree (make -C sender),
# else one on PATH (an installed one), as in t/050_sender.pl
my $sender;
for my $candidate (($ENV{ITM_SENDER} // ()), "$top/sender/invitetomedia-sender",
	map { "$_/invitetomedia-sender" } split /:/, ($ENV{PATH} // ''))
{
	if (-x $candidate && !-d $candidate)
	{
		$sender = $candidate;
		last;
	}
}
BAIL_OUT('invitetomedia-sender not found: run "make -C sender" first') unless $sender;
note "sender: $sender";

my @harnesses;    # background senders, killed if a test dies
END { eval { $_->kill_kill } for @harnesses; }

my $node = PostgreSQL::Test::Cluster->new('claims');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

my $tmp = PostgreSQL::Test::Utils::tempdir();

sub sql_in
{
	my ($db, $query) = @_;
	return $node->safe_psql($db, $query);
}

sub sql { return sql_in('postgres', @_); }

# runs a query as role on db; returns (stdout, stderr); dies on an error
sub sql_as
{
	my ($role, $db, $query) = @_;
	my ($out, $err) = ('', '');
	$node->psql($db, $query,
		stdout => \$out,
		stderr => \$err,
		on_error_die => 1,
		extra_params => [ '-U', $role ]);
	return ($out, $err);
}

# the schema, a user, a media item and an invite template in db
sub setup_db
{
	my ($db, $version) = @_;
	my $v = defined $version ? " VERSION '$version'" : '';
	sql_in($db, <<"EOSQL");
CREATE EXTENSION invitetomedia$v CASCADE;
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)
VALUES ('owner', 'owner\@example.com', 'Olga', 'Owner', 'admin');
INSERT INTO invitetomedia.media (media_id, media_type, title, owner_id)
VALUES ('m1', 'webcast', 'Claims', 'owner');
INSERT INTO invitetomedia.email_templates
VALUES ('invite', 'You are invited to {MEDIA_TITLE}', 'Hello {FIRST_NAME}, open {URL}.');
UPDATE invitetomedia.settings
   SET enabled = true, invite_email_template = 'invite',
       link_base_url = 'https://media.example.com/invite/';
GRANT USAGE ON SCHEMA invitetomedia TO sender, claimsender;
EOSQL
}

# queues one message in db; returns its message_id
sub invite_in
{
	my ($db, $email) = @_;
	my $invite_id = sql_in($db,
		"SELECT invite_id FROM invitetomedia.invite_create('m1', 'owner', '$email',
		        'Ina', 'Vite', 'viewer', send_email => true)");
	return sql_in($db,
		"SELECT max(message_id) FROM invitetomedia.outbox WHERE invite_id = $invite_id");
}

sub invite { return invite_in('postgres', @_); }

sub state_of
{
	my ($id, $db) = @_;
	return sql_in($db // 'postgres',
		"SELECT state FROM invitetomedia.email_messages WHERE message_id = $id");
}

# nothing left to send or to retry in db
sub outbox_done
{
	my ($db) = @_;
	return sql_in($db // 'postgres',
		"SELECT count(*) FROM invitetomedia.outbox WHERE sent_at IS NULL AND dead_at IS NULL");
}

sub wait_until
{
	my ($cond, $seconds) = @_;
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(50_000);
	}
	return $cond->() ? 1 : 0;
}

sub new_mail_dir
{
	my ($name) = @_;
	my $dir = "$tmp/mail-$name";
	mkdir $dir or die "mkdir $dir: $!";
	return $dir;
}

sub mail_files
{
	my ($dir) = @_;
	opendir(my $dh, $dir) or die "opendir $dir: $!";
	my @files = grep { /\.eml$/ } readdir $dh;
	closedir $dh;
	return scalar @files;
}

# the Message-IDs of the messages stored in dir, sorted
sub message_ids
{
	my ($dir) = @_;
	opendir(my $dh, $dir) or die "opendir $dir: $!";
	my @files = grep { /\.eml$/ } readdir $dh;
	closedir $dh;
	my @ids;
	for my $f (@files)
	{
		push @ids, $1 if slurp("$dir/$f") =~ /^Message-Id:\s*(\S+)/mi;
	}
	return sort @ids;
}

# messages fake-sendmail is reading or sleeping on
sub in_flight
{
	my ($dir) = @_;
	opendir(my $dh, $dir) or die "opendir $dir: $!";
	my @files = grep { /^\.incoming\./ } readdir $dh;
	closedir $dh;
	return scalar @files;
}

# the recipient of the message a sender is sending now (its fake sendmail
# holds it under a hidden name until it is stored), or '' while none
sub in_flight_to
{
	my ($dir) = @_;
	opendir(my $dh, $dir) or die "opendir $dir: $!";
	my @files = grep { /^\.incoming\./ } readdir $dh;
	closedir $dh;
	for my $f (@files)
	{
		my $text = slurp("$dir/$f");
		return $1 if $text =~ /^To:\s*(.+)$/m;
	}
	return '';
}

sub slurp
{
	my ($file) = @_;
	open(my $fh, '<:raw', $file) or return '';
	local $/;
	my $s = <$fh>;
	close $fh;
	return $s // '';
}

# the sender's command line, with FAKE_* settings in its environment
my $runs = 0;

sub sender_cmd
{
	my (%o) = @_;
	my %env = (FAKE_MAIL_DIR => $o{dir}, %{ $o{env} // {} });
	return [
		'env', (map { "$_=$env{$_}" } sort keys %env),
		$sender,
		'--sendmail' => "/bin/sh '$fake' -t -i",
		'--from' => 'invites@test.example',
		'--domain' => 'test.example',
		@{ $o{args} // [] },
		$node->connstr($o{db} // 'postgres') . ' user=' . ($o{role} // 'sender')
	];
}

# runs the sender with --once; returns (exit code, log)
sub run_once
{
	my (%o) = @_;
	my $log = "$tmp/sender-" . ++$runs . '.log';
	$o{args} = [ '--once', @{ $o{args} // [] } ];
	IPC::Run::run(sender_cmd(%o), '<', \undef, '>', '/dev/null', '2>', $log,
		IPC::Run::timeout(90));
	return ($? >> 8, slurp($log));
}

# starts a sender in the background; returns {h, log}
sub start_sender
{
	my (%o) = @_;
	my $log = "$tmp/sender-" . ++$runs . '.log';
	my $h = IPC::Run::start(sender_cmd(%o), '<', \undef, '>', '/dev/null',
		'2>', $log, IPC::Run::timeout(120));
	push @harnesses, $h;
	return { h => $h, log => $log };
}

sub sender_log { return slurp($_[0]->{log}); }

# waits for a background sender to exit; returns its wait status
sub finish_sender
{
	my ($s, $sig) = @_;
	$s->{h}->signal($sig) if $sig;
	eval { $s->{h}->finish; };
	@harnesses = grep { $_ != $s->{h} } @harnesses;
	return $s->{h}->full_result(0);
}

# the log lines about one message
sub message_lines
{
	my ($log, $id) = @_;
	return grep { /message $id\b/ } split /\n/, $log;
}

# roles are per cluster: the README's sender role (every email function of
# the database's version), and one allowed only the claim-aware forms, so a
# sender running as it proves which forms it called
sql("CREATE ROLE sender LOGIN; CREATE ROLE claimsender LOGIN;");
setup_db('postgres');
sql(<<'EOSQL');
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim(integer, interval),
                          invitetomedia.email_sent(bigint),
                          invitetomedia.email_failed(bigint, text),
                          invitetomedia.email_sent(bigint, integer),
                          invitetomedia.email_failed(bigint, text, integer, boolean),
                          invitetomedia.email_release(bigint, integer)
   TO sender;
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim(integer, interval),
                          invitetomedia.email_sent(bigint, integer),
                          invitetomedia.email_failed(bigint, text, integer, boolean),
                          invitetomedia.email_release(bigint, integer)
   TO claimsender;
EOSQL
my $default = default_version();
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia'"),
	$default, "CREATE EXTENSION installs the default version ($default)");

###########################################################################
# 1. the SQL API: two senders, an expired lease, late confirmations
###########################################################################
{
	my $id = invite('late@example.org');
	is(sql("SELECT claim_no FROM invitetomedia.outbox WHERE message_id = $id"),
		'0', 'a new message has claim_no 0');

	my ($a_claim) = sql_as('sender', 'postgres',
		"SELECT message_id, claim_no FROM invitetomedia.email_claim(10, '1 second')");
	is($a_claim, "$id|1", 'sender A claims the message: claim 1');
	is(state_of($id), 'claimed', 'the message is claimed');
	ok(wait_until(sub { state_of($id) eq 'pending' }, 10), "A's lease runs out");

	my ($b_claim) = sql_as('sender', 'postgres',
		"SELECT message_id, claim_no FROM invitetomedia.email_claim(10, '1 minute')");
	is($b_claim, "$id|2", 'sender B claims the same message: claim 2');

	my ($out, $err) = sql_as('sender', 'postgres',
		"SELECT invitetomedia.email_failed($id, 'x', 1)");
	is($out, 'superseded', "A's late email_failed returns superseded");
	is(sql("SELECT m.state, o.claim_no, o.attempts, o.last_error IS NULL,
	               o.next_attempt_at > now() + interval '50 seconds'
	          FROM invitetomedia.email_messages m
	          JOIN invitetomedia.outbox o USING (message_id)
	         WHERE message_id = $id"),
		'claimed|2|2|t|t',
		"and changes nothing: still claimed by B, no error recorded, not due");
	($out) = sql_as('sender', 'postgres',
		"SELECT count(*) FROM invitetomedia.email_claim(10, '1 minute')");
	is($out, '0', 'a third claim gets nothing');

	($out, $err) = sql_as('sender', 'postgres',
		"SELECT invitetomedia.email_sent($id, 1)");
	is($out, 'f', "A's late email_sent returns false");
	like($err, qr/WARNING: .*superseded/, 'with a WARNING saying the claim was superseded');
	is(sql("SELECT m.state, o.sent_at IS NULL, o.body IS NOT NULL, o.claim_no
	          FROM invitetomedia.email_messages m
	          JOIN invitetomedia.outbox o USING (message_id)
	         WHERE message_id = $id"),
		'claimed|t|t|2', 'and leaves the message unsent, with its body, claimed by B');

	($out, $err) = sql_as('sender', 'postgres',
		"SELECT invitetomedia.email_sent($id, 2)");
	is($out, 't', "B's email_sent with the current claim returns true");
	is($err, '', 'without a warning');
	is(sql("SELECT m.state, o.body IS NULL
	          FROM invitetomedia.email_messages m
	          JOIN invitetomedia.outbox o USING (message_id)
	         WHERE message_id = $id"),
		'sent|t', 'the message is sent and its body scrubbed');

	($out, $err) = sql_as('sender', 'postgres',
		"SELECT invitetomedia.email_sent($id, 2)");
	is($out, 'f', 'email_sent once more: false (already sent)');
	is($err, '', 'already sent is no superseded claim: no warning');
	($out) = sql_as('sender', 'postgres',
		"SELECT coalesce(invitetomedia.email_failed($id, 'x', 2), 'NULL')");
	is($out, 'NULL', 'email_failed on a sent message: NULL (not queued)');
	($out) = sql_as('sender', 'postgres',
		"SELECT coalesce(invitetomedia.email_failed(-1, 'x', 1), 'NULL'),
		        invitetomedia.email_sent(-1, 1)");
	is($out, 'NULL|f', 'a message that does not exist: NULL and false');

	# the current claim's failure is recorded as in 1.0
	sql("UPDATE invitetomedia.settings SET email_retry_delay = '1 second'");
	my $f = invite('retry@example.org');
	($out) = sql_as('sender', 'postgres',
		"SELECT claim_no FROM invitetomedia.email_claim(10, '1 minute')");
	is($out, '1', 'claim 1 of a second message');
	($out) = sql_as('sender', 'postgres',
		"SELECT invitetomedia.email_failed($f, 'relay down', 1)");
	is($out, 'pending', 'email_failed with the current claim: pending');
	is(sql("SELECT state, last_error FROM invitetomedia.email_messages WHERE message_id = $f"),
		'pending|relay down', 'the failure is recorded');
	ok(wait_until(sub { state_of($f) eq 'pending'
		  && sql("SELECT next_attempt_at <= now() FROM invitetomedia.outbox
		           WHERE message_id = $f") eq 't' }, 10), 'and it is due again');
	sql("UPDATE invitetomedia.settings SET email_max_attempts = 2");
	($out) = sql_as('sender', 'postgres',
		"SELECT claim_no FROM invitetomedia.email_claim(10, '1 minute')");
	is($out, '2', 'claim 2');
	($out) = sql_as('sender', 'postgres',
		"SELECT invitetomedia.email_failed($f, 'relay down', 2)");
	is($out, 'dead', 'email_failed at the last attempt: dead');
	sql("UPDATE invitetomedia.settings SET email_max_attempts = 8");

	# the 1.0 forms keep working on a 1.0.1 database
	my $o = invite('old@example.org');
	($out) = sql_as('sender', 'postgres',
		"SELECT message_id, to_email FROM invitetomedia.email_claim(10, '1 minute')");
	is($out, "$o|old\@example.org", '1.0 form: email_claim by its 1.0 columns');
	($out) = sql_as('sender', 'postgres', "SELECT invitetomedia.email_failed($o, 'x')");
	is($out, 'pending', '1.0 form: email_failed(bigint, text) returns pending');
	ok(wait_until(sub {
		sql("SELECT next_attempt_at <= now() FROM invitetomedia.outbox
		      WHERE message_id = $o") eq 't' }, 10), 'the message is due again');
	($out) = sql_as('sender', 'postgres',
		"SELECT count(*) FROM invitetomedia.email_claim(10, '1 minute')");
	is($out, '1', 'claimed again');
	($out, $err) = sql_as('sender', 'postgres', "SELECT invitetomedia.email_sent($o)");
	is($out, 't', '1.0 form: email_sent(bigint) returns true');
	is(state_of($o), 'sent', 'and the message is sent');
	($out) = sql_as('sender', 'postgres', "SELECT invitetomedia.email_sent($o)");
	is($out, 'f', '1.0 form: email_sent(bigint) once more: false');
	is(sql("SELECT claim_no FROM invitetomedia.outbox WHERE message_id = $o"), '2',
		'claims through the 1.0 call forms are numbered too');
	sql("UPDATE invitetomedia.settings SET email_retry_delay = '1 minute'");
	is(outbox_done(), '0', 'section 1 leaves nothing queued');
}

###########################################################################
# 2. the real sender: claim-aware forms at 1.0.1, the 1.0 forms at 1.0, and
#    the switch when the database is updated under it
###########################################################################
{
	my $dir = new_mail_dir('new');
	my $id = invite('claims@example.org');
	my ($rc, $log) = run_once(dir => $dir, role => 'claimsender', args => ['--verbose']);
	is($rc, 0, '1.0.1 database: sender --once exits 0');
	is(mail_files($dir), 1, 'the message is handed to sendmail');
	like($log, qr/email_claim returns claim numbers/, 'the sender sees claim numbers');
	like($log, qr/^invitetomedia-sender: message $id to c\*\*\*\@example\.org: sent$/m,
		'and confirms the message');
	# (a word: 2.0's sender names email_failed_all when it cannot use it)
	unlike($log, qr/server:|\bfailed\b/, 'no server message, nothing failed');
	is(sql("SELECT claim_no, sent_at IS NOT NULL, attempts
	          FROM invitetomedia.outbox WHERE message_id = $id"),
		'1|t|1',
		'sent under claim 1 by a role that may call only the claim-aware forms');
	my $key = sql("SELECT message_key FROM invitetomedia.outbox WHERE message_id = $id");
	is_deeply([ message_ids($dir) ], ["<itm-$key\@test.example>"],
		'1.0.1 database: the Message-ID carries the message key');
}

{
	my $db = 'old';
	sql("CREATE DATABASE $db");
	setup_db($db, '1.0');
	sql_in($db, <<'EOSQL');
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim(integer, interval),
                          invitetomedia.email_sent(bigint),
                          invitetomedia.email_failed(bigint, text)
   TO sender;
EOSQL
	is(sql_in($db,
		"SELECT e.extversion, count(c.column_name)
		   FROM pg_extension e
		   LEFT JOIN information_schema.columns c
		     ON c.table_schema = 'invitetomedia' AND c.table_name = 'outbox'
		    AND c.column_name = 'claim_no'
		  WHERE e.extname = 'invitetomedia' GROUP BY 1"),
		'1.0|0', "database '$db' is at 1.0: no claim numbers");

	my $dir = new_mail_dir('old');
	my $id = invite_in($db, 'old@example.org');
	my ($rc, $log) = run_once(dir => $dir, db => $db);
	is($rc, 0, '1.0 database: sender --once exits 0');
	is(mail_files($dir), 1, 'the message is handed to sendmail');
	like($log, qr/email_claim returns no claim numbers \(extension version 1\.0\)/,
		'the sender says it confirms without claim numbers');
	like($log, qr/^invitetomedia-sender: message $id to o\*\*\*\@example\.org: sent$/m,
		'and confirms with the 1.0 forms');
	is(state_of($id, $db), 'sent', 'the message is sent');
	is_deeply([ message_ids($dir) ], ["<itm-$id\@test.example>"],
		'1.0 database (no message keys): the Message-ID carries the message id');

	# the update, under a running sender: the next claim result has claim_no
	my $s = start_sender(dir => $dir, db => $db, args => [ '--poll' => 300 ]);
	ok(wait_until(sub { sender_log($s) =~ /listening on invitetomedia_email/ }, 30),
		'a sender is listening on the 1.0 database');
	sql_in($db, "ALTER EXTENSION invitetomedia UPDATE TO '1.0.1'");
	is(sql_in($db, "SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia'"),
		'1.0.1', "database '$db' updated to 1.0.1");
	is(sql_in($db,
		"SELECT has_function_privilege('sender', 'invitetomedia.email_claim(integer, interval)', 'EXECUTE'),
		        has_function_privilege('sender', 'invitetomedia.email_sent(bigint, integer)', 'EXECUTE'),
		        has_function_privilege('sender', 'invitetomedia.email_failed(bigint, text, integer, boolean)', 'EXECUTE')"),
		't|t|t', "the update carries the sender role's grants over to the 1.0.1 functions");
	# without the 1.0 forms, only a claim-aware confirmation can succeed
	sql_in($db, 'REVOKE EXECUTE ON FUNCTION invitetomedia.email_sent(bigint),
	                                   invitetomedia.email_failed(bigint, text) FROM sender');
	my $next = invite_in($db, 'next@example.org');
	ok(wait_until(sub { state_of($next, $db) eq 'sent' }, 30),
		'the running sender delivers and confirms a message queued after the update');
	is(sql_in($db, "SELECT claim_no FROM invitetomedia.outbox WHERE message_id = $next"),
		'1', 'under claim 1');
	is(finish_sender($s, 'TERM'), 0, 'the sender stops cleanly');
	my $slog = sender_log($s);
	like($slog, qr/returns no claim numbers.*email_claim returns claim numbers/s,
		'it logged the switch to claim numbers once the database had them');
	unlike($slog, qr/server:|\bfailed\b/, 'no server message, nothing failed');
	is(mail_files($dir), 2, 'two messages delivered from the old database');
	my $next_key = sql_in($db, "SELECT message_key FROM invitetomedia.outbox WHERE message_id = $next");
	is_deeply([ message_ids($dir) ], [ sort "<itm-$id\@test.example>", "<itm-$next_key\@test.example>" ],
		'after the update, Message-IDs carry the message key');
}

###########################################################################
# 3. a slow sender's late failure does not make the message due again
###########################################################################
{
	# with the 1.0 email_failed, the late failure would make the message due
	# after email_retry_delay x 2 (its second attempt): 2 seconds
	sql("UPDATE invitetomedia.settings SET email_retry_delay = '1 second'");
	my ($dir_a, $dir_b, $dir_c) = map { new_mail_dir("slow-$_") } qw(a b c);
	my $id = invite('slow@example.org');

	# A: a one-second lease and a sendmail that takes 4 s and then fails
	my $a = start_sender(
		dir => $dir_a,
		env => { FAKE_SENDMAIL_SLEEP => 4, FAKE_SENDMAIL_FAIL => 1 },
		args => [ '--once', '--lease' => 1, '--timeout' => 20 ]);
	ok(wait_until(sub { in_flight($dir_a) > 0 }, 30), 'sender A is sending the message');
	ok(wait_until(sub { state_of($id) eq 'pending' }, 10), "A's lease runs out");

	# B: claims it again and takes 8 s to send it
	my $b = start_sender(
		dir => $dir_b,
		env => { FAKE_SENDMAIL_SLEEP => 8 },
		args => [ '--once', '--lease' => 60, '--timeout' => 30 ]);
	ok(wait_until(sub { in_flight($dir_b) > 0 }, 30), 'sender B is sending it too');
	is(sql("SELECT claim_no FROM invitetomedia.outbox WHERE message_id = $id"),
		'2', 'under claim 2');

	is(finish_sender($a), 0, 'A finishes (its sendmail failed) and exits 0');
	ok(in_flight($dir_b) > 0, "B was still sending when A's failure came in");
	my $alog = sender_log($a);
	my @lines = message_lines($alog, $id);
	is(scalar @lines, 1, 'A logs one line about the message');
	like($lines[0] // '', qr/: failed, superseded \(another sender claimed it after our lease ran out/,
		'saying that its claim was superseded');
	unlike($alog, qr/server:/, "the server's WARNING is not logged a second time");
	is(sql("SELECT m.state, o.claim_no, o.last_error IS NULL
	          FROM invitetomedia.email_messages m
	          JOIN invitetomedia.outbox o USING (message_id)
	         WHERE message_id = $id"),
		'claimed|2|t', "A's failure changed nothing: the message is B's");

	# C, after the 1.0 form would have made the message due again
	usleep(2_500_000);
	my ($rc, $clog) = run_once(dir => $dir_c, args => [ '--lease' => 60 ]);
	is($rc, 0, 'a third sender C exits 0');
	is(mail_files($dir_c), 0, 'C finds nothing to send');
	is(scalar(message_lines($clog, $id)), 0, 'and says nothing about the message');

	is(finish_sender($b), 0, 'B finishes and exits 0');
	like(sender_log($b), qr/message $id to s\*\*\*\@example\.org: sent$/m, 'B confirms the message');
	is(sql("SELECT m.state, o.claim_no, o.attempts, o.last_error IS NULL
	          FROM invitetomedia.email_messages m
	          JOIN invitetomedia.outbox o USING (message_id)
	         WHERE message_id = $id"),
		'sent|2|2|t', 'sent under claim 2, two attempts, no error');
	is(mail_files($dir_a) + mail_files($dir_b) + mail_files($dir_c), 1,
		'the message was delivered once');
	sql("UPDATE invitetomedia.settings SET email_retry_delay = '1 minute'");
	is(outbox_done(), '0', 'section 3 leaves nothing queued');
}

###########################################################################
# 4. SIGTERM: a message claimed again by another sender is not handed back
###########################################################################
{
	my ($dir_a, $dir_b) = map { new_mail_dir("term-$_") } qw(a b);
	my $first = invite('first@example.org');
	my $second = invite('second@example.org');

	# A claims both for one second, and takes 5 s for the first.  B (below)
	# cannot claim them before A's lease has run out and takes 5 s as well,
	# so A's confirmation comes while B is still sending the first message.
	my $a = start_sender(
		dir => $dir_a,
		env => { FAKE_SENDMAIL_SLEEP => 5 },
		args => [ '--batch' => 2, '--lease' => 1, '--timeout' => 20, '--poll' => 300 ]);
	ok(wait_until(sub { in_flight($dir_a) > 0 }, 30), 'sender A is sending the first message');
	# A sends its claimed batch in the order email_claim returned it, which
	# 2.0's drawn message ids leave open: "first" is the one A is sending
	my $a_to = '';
	wait_until(sub { ($a_to = in_flight_to($dir_a)) ne '' }, 10);
	($first, $second) = ($second, $first) if $a_to =~ /second\@example\.org/;
	diag("sender A sends $a_to first");
	is(sql("SELECT string_agg(claim_no::text, ',' ORDER BY message_id)
	          FROM invitetomedia.outbox WHERE message_id IN ($first, $second)"),
		'1,1', 'A holds claim 1 of both');
	ok(wait_until(sub { state_of($second) eq 'pending' }, 10), "A's lease runs out");

	# B claims both again, and takes 5 s for each
	my $b = start_sender(
		dir => $dir_b,
		env => { FAKE_SENDMAIL_SLEEP => 5 },
		args => [ '--once', '--lease' => 60, '--timeout' => 30 ]);
	ok(wait_until(sub { in_flight($dir_b) > 0 }, 30), 'sender B is sending');
	is(sql("SELECT string_agg(claim_no::text, ',' ORDER BY message_id)
	          FROM invitetomedia.outbox WHERE message_id IN ($first, $second)"),
		'2,2', 'B holds claim 2 of both');

	is(finish_sender($a, 'TERM'), 0, 'SIGTERM: A finishes the message in hand and exits 0');
	is(state_of($first), 'claimed', 'B was still sending the first message when A confirmed it');
	my $alog = sender_log($a);
	like(join("\n", message_lines($alog, $first)),
		qr/^[^\n]*: sent, but superseded \(another sender claimed it after our lease ran out\)$/,
		'A: the first message was sent, but its claim was superseded');
	like(join("\n", message_lines($alog, $second)),
		qr/^[^\n]*message $second: not handed back, superseded/,
		'A: the second message is not handed back');
	unlike($alog, qr/server:/, "the server's WARNINGs are not logged a second time");
	# B too sends in the order its claim returned: if it took the second
	# message first, it may have sent it by now, still under its claim 2
	like(sql("SELECT m.state, o.claim_no, o.last_error IS NULL
	            FROM invitetomedia.email_messages m
	            JOIN invitetomedia.outbox o USING (message_id)
	           WHERE message_id = $second"),
		qr/^(claimed|sent)\|2\|t$/, "the second message is still B's: claim 2, claimed or sent by B, no error");

	is(finish_sender($b), 0, 'B finishes and exits 0');
	is(sql("SELECT string_agg(m.state || '/' || o.claim_no, ',' ORDER BY message_id)
	          FROM invitetomedia.email_messages m
	          JOIN invitetomedia.outbox o USING (message_id)
	         WHERE message_id IN ($first, $second)"),
		'sent/2,sent/2', 'B sent and confirmed both under claim 2');
	is(mail_files($dir_b), 2, 'B delivered both');
	is(mail_files($dir_a), 1, 'A delivered the first (a duplicate with the same Message-ID)');
	is(outbox_done(), '0', 'section 4 leaves nothing queued');
}

# the senders' logs, when something failed (or SENDER_TEST_VERBOSE is set)
if (!Test::More->builder->is_passing || $ENV{SENDER_TEST_VERBOSE})
{
	for my $n (1 .. $runs)
	{
		my $log = slurp("$tmp/sender-$n.log");
		$log =~ s/[^\x20-\x7e\n]/?/g;
		diag("--- sender run $n ---\n$log");
	}
}

$node->stop;
done_testing();
