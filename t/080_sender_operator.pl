# t/080_sender_operator.pl - a sender an operator can trust, as a daemon
#
# What an operator, cron or a service manager sees of invitetomedia-sender
# when something is wrong around it, with the real program, a throwaway
# cluster (and a standby) and sender/test/fake-sendmail:
#
#  1. Message-IDs carry the message key: two databases give messages with
#     the same id (1.x counts from 1 in each; 2.0 draws ids per tenant, so
#     they may repeat: here the second database's is set to the first's)
#     different Message-IDs, and a retry keeps its message's
#  2. a database without the extension, a role without its grants, a role
#     whose email_sent is refused: a message naming the fix, no "listening"
#     as if all were well, exit 78 after three identical failures
#  3. --once exits 1 when a message handed to sendmail was not confirmed
#  4. a server error is logged on one line, with its hint, without DETAIL
#  5. SIGTERM and SIGHUP hand back claimed messages not started, due at once
#     with their attempt not counted (1.0: recorded as a failure, as before)
#  6. started by a parent that ignores SIGCHLD and blocks SIGTERM
#  7. started with descriptors 0, 1 and 2 closed
#  8. pointed at a standby: reconnection attempts are spaced out
#  9. connection timeouts added where the connection string sets none
# 10. a mailer that leaves input unread, and a lone "." in a body
# 11. mailer exit statuses: EX_TEMPFAIL and others retried, the other
#     sysexits codes dead at once (1.0: retried, as before)
# 12. --from with a display name that needs quoting
use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run ();
use JSON::PP ();
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = abs_path(File::Spec->catdir(dirname(__FILE__), '..'));
my $fake = "$top/sender/test/fake-sendmail";
my $parser = "$top/sender/test/parse-mail.py";

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
BAIL_OUT("python3 is needed to parse the messages")
  unless system('python3 -c "import email.policy" 2>/dev/null') == 0;
note "sender: $sender";

my @harnesses;    # background senders, killed if a test dies
END { eval { $_->kill_kill } for @harnesses; }

# streaming allowed: section 8 makes a standby of it
my $node = PostgreSQL::Test::Cluster->new('operator');
$node->init(allows_streaming => 1, extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

my $tmp = PostgreSQL::Test::Utils::tempdir();

sub sql_in
{
	my ($db, $query) = @_;
	return $node->safe_psql($db, $query);
}

sub sql { return sql_in('postgres', @_); }

# the README's sender role, granted what the database's version has
my %readme_grants = (
	'1.0' => 'invitetomedia.email_claim(integer, interval),
	          invitetomedia.email_sent(bigint),
	          invitetomedia.email_failed(bigint, text)',
	'1.0.1' => 'invitetomedia.email_claim(integer, interval),
	            invitetomedia.email_sent(bigint, integer),
	            invitetomedia.email_failed(bigint, text, integer, boolean),
	            invitetomedia.email_release(bigint, integer),
	            invitetomedia.email_sent(bigint),
	            invitetomedia.email_failed(bigint, text)');

# the schema, a user, a media item, an invite template and the sender
# role's grants in db
sub setup_db
{
	my ($db, $version) = @_;
	my $v = defined $version ? " VERSION '$version'" : '';
	sql_in($db, <<"EOSQL");
CREATE EXTENSION invitetomedia$v CASCADE;
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)
VALUES ('owner', 'owner\@example.com', 'Olga', 'Owner', 'admin');
INSERT INTO invitetomedia.media (media_id, media_type, title, owner_id)
VALUES ('m1', 'webcast', 'Operators', 'owner');
INSERT INTO invitetomedia.email_templates
VALUES ('invite', 'You are invited to {MEDIA_TITLE}', 'Hello {FIRST_NAME}, open {URL}.');
UPDATE invitetomedia.settings
   SET enabled = true, invite_email_template = 'invite',
       link_base_url = 'https://media.example.com/invite/';
GRANT USAGE ON SCHEMA invitetomedia TO sender;
GRANT EXECUTE ON FUNCTION $readme_grants{$version // '1.0.1'} TO sender;
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

# queues a message with this body directly (as the extension would);
# returns its message_id
sub queue_body
{
	my ($email, $body) = @_;
	my $invite_id = sql(
		"SELECT invite_id FROM invitetomedia.invite_create('m1', 'owner', '$email',
		        'Ina', 'Vite', 'viewer')");
	$body =~ s/'/''/g;
	# 2.0: an outbox row names its tenant and site (the invite's), and its
	# id has no default (the API draws it): a direct write gives them
	return sql(
		"INSERT INTO invitetomedia.outbox (tenant_id, site_id, message_id, invite_id,
		                                   to_email, to_name, subject, body)
		 SELECT i.tenant_id, i.site_id, 1 + floor(random() * 1e15)::int8, i.invite_id,
		        '$email', 'Ina Vite', 'Body test', '$body'
		   FROM invitetomedia.invites i WHERE i.invite_id = $invite_id
		 RETURNING message_id");
}

sub state_of
{
	my ($id, $db) = @_;
	return sql_in($db // 'postgres',
		"SELECT state FROM invitetomedia.email_messages WHERE message_id = $id");
}

# attempts|due now|not claimed|no error recorded
sub handed_back_state
{
	my ($id, $db) = @_;
	return sql_in($db // 'postgres',
		"SELECT attempts, next_attempt_at <= now(), claimed_until IS NULL,
		        last_error IS NULL
		   FROM invitetomedia.outbox WHERE message_id = $id");
}

sub wait_until
{
	my ($cond, $seconds) = @_;
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
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
	my @files = sort grep { /\.eml$/ } readdir $dh;
	closedir $dh;
	return map { "$dir/$_" } @files;
}

sub in_flight
{
	my ($dir) = @_;
	opendir(my $dh, $dir) or die "opendir $dir: $!";
	my @files = grep { /^\.incoming\./ } readdir $dh;
	closedir $dh;
	return scalar @files;
}

sub parse_mail
{
	my @files = @_;
	return [] unless @files;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'python3', $parser, @files ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60))
	  or die "parse-mail.py failed: $err";
	return JSON::PP->new->decode($out);
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

# the sender's command line: FAKE_* settings in its environment, options
# wrapper (a command that execs the rest), sendmail, from, connstr or
# db/role, args
my $runs = 0;

sub sender_cmd
{
	my (%o) = @_;
	my %env = (FAKE_MAIL_DIR => $o{dir} // "$tmp/nowhere", %{ $o{env} // {} });
	return [
		@{ $o{wrapper} // [] },
		'env', (map { "$_=$env{$_}" } sort keys %env),
		$sender,
		'--sendmail' => $o{sendmail} // "/bin/sh '$fake' -t -i",
		'--from' => $o{from} // 'invites@test.example',
		'--domain' => 'test.example',
		@{ $o{args} // [] },
		$o{connstr}
		  // $node->connstr($o{db} // 'postgres') . ' user=' . ($o{role} // 'sender')
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
	# no pipe to it: pumpable() then says whether it is still running
	my $h = IPC::Run::start(sender_cmd(%o), '<', '/dev/null', '>', '/dev/null',
		'2>', $log, IPC::Run::timeout(300));
	push @harnesses, $h;
	return { h => $h, log => $log };
}

sub sender_log { return slurp($_[0]->{log}); }

sub running { return $_[0]->{h}->pumpable; }

# sends sig (if any) to a background sender and waits at most seconds for
# it to exit (then kills it); returns (exited in time, wait status)
sub finish_sender
{
	my ($s, $sig, $seconds) = @_;
	$s->{h}->signal($sig) if $sig;
	my $exited = wait_until(sub { !running($s) }, $seconds // 30);
	$s->{h}->kill_kill unless $exited;
	eval { $s->{h}->finish; };
	@harnesses = grep { $_ != $s->{h} } @harnesses;
	return ($exited, $s->{h}->full_result(0));
}

# nothing left to send or to retry in db: what is pending is made due and
# delivered
sub settle
{
	my ($db) = @_;
	$db //= 'postgres';
	sql_in($db,
		"UPDATE invitetomedia.outbox SET next_attempt_at = now(), claimed_until = NULL
		  WHERE sent_at IS NULL AND dead_at IS NULL");
	my ($rc, $log) = run_once(dir => new_mail_dir("settle-$runs"), db => $db);
	return $rc == 0
	  && sql_in($db,
		"SELECT count(*) FROM invitetomedia.outbox WHERE sent_at IS NULL AND dead_at IS NULL"
	  ) eq '0';
}

sub count_lines
{
	my ($log, $re) = @_;
	return scalar(grep { /$re/ } split /\n/, $log);
}

sql(<<'EOSQL');
CREATE ROLE sender LOGIN;
CREATE ROLE nogrant LOGIN;
CREATE ROLE halfsender LOGIN;
CREATE DATABASE second;
CREATE DATABASE old;
CREATE DATABASE noext;
EOSQL
setup_db('postgres');
setup_db('second');
setup_db('old', '1.0');
sql(<<'EOSQL');
GRANT USAGE ON SCHEMA invitetomedia TO halfsender;
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim(integer, interval),
                          invitetomedia.email_failed(bigint, text, integer, boolean),
                          invitetomedia.email_release(bigint, integer)
   TO halfsender;
EOSQL

###########################################################################
# 1. Message-IDs: unique across databases, the same for every retry
###########################################################################
{
	my $one = invite_in('postgres', 'one@example.org');
	my $two = invite_in('second', 'one@example.org');
	# 2.0's ids are random: give the second database's message the first's
	# id, as two databases (or two tenants) may draw
	sql_in('second', "UPDATE invitetomedia.outbox SET message_id = $one WHERE message_id = $two")
	  if $one ne $two;
	my $ids = q{SELECT string_agg(message_id::text, ',') FROM invitetomedia.outbox};
	is(sql_in('postgres', $ids) . '|' . sql_in('second', $ids), "$one|$one",
		'two databases: each queues one message, with the same id');
	my ($dir1, $dir2) = map { new_mail_dir("msgid-$_") } 1, 2;
	my ($rc1) = run_once(dir => $dir1, db => 'postgres');
	my ($rc2) = run_once(dir => $dir2, db => 'second');
	is("$rc1|$rc2", '0|0', 'both delivered');
	my ($m1) = @{ parse_mail(mail_files($dir1)) };
	my ($m2) = @{ parse_mail(mail_files($dir2)) };
	my $key1 = sql_in('postgres', "SELECT message_key FROM invitetomedia.outbox WHERE message_id = $one");
	my $key2 = sql_in('second', "SELECT message_key FROM invitetomedia.outbox WHERE message_id = $one");
	isnt($key1, '', 'the first database has the message');
	isnt($key2, '', 'the second database has the message');
	isnt($m1->{message_id}, $m2->{message_id},
		'the same message id in two databases: different Message-IDs');
	is($m1->{message_id}, "<itm-$key1\@test.example>", 'the first carries its message key');
	is($m2->{message_id}, "<itm-$key2\@test.example>", 'the second carries its message key');

	# a retry: the first attempt is taken by a mailer that keeps a copy and
	# fails with EX_TEMPFAIL, the second by fake-sendmail
	my $dir = new_mail_dir('retry');
	my $id = invite('retry@example.org');
	my ($rc, $log) = run_once(dir => $dir, sendmail => "cat > '$dir/attempt1.eml'; exit 75");
	like($log, qr/message $id to r\*\*\*\@example\.org: failed, will retry/, 'the first attempt fails');
	sql("UPDATE invitetomedia.outbox SET next_attempt_at = now() WHERE message_id = $id");
	($rc, $log) = run_once(dir => $dir);
	like($log, qr/message $id to r\*\*\*\@example\.org: sent$/m, 'the retry is sent');
	my @copies = @{ parse_mail(mail_files($dir)) };
	is(scalar @copies, 2, 'two copies: the failed attempt and the retry');
	is($copies[0]{message_id} // '', $copies[1]{message_id} // 'x',
		'a retry keeps its Message-ID');
	my $key = sql("SELECT message_key FROM invitetomedia.outbox WHERE message_id = $id");
	is($copies[1]{message_id}, "<itm-$key\@test.example>", 'the message key');
}

###########################################################################
# 2. errors that retrying will not cure do not look healthy
###########################################################################
{
	# no extension in the database
	my $s = start_sender(db => 'noext', args => [ '--poll' => 300 ]);
	my ($exited, $status) = finish_sender($s, undef, 40);
	my $log = sender_log($s);
	ok($exited, 'no extension: the daemon gives up by itself');
	is($status >> 8, 78, 'with exit status 78 (EX_CONFIG)');
	like($log, qr/email_claim failed: ERROR: +schema "invitetomedia" does not exist.*CREATE EXTENSION invitetomedia/,
		'the log names the fix: CREATE EXTENSION invitetomedia');
	unlike($log, qr/listening/, 'and never says it is listening');
	is(count_lines($log, qr/email_claim failed/), 3, 'after three identical failures');
	like($log, qr/giving up: email_claim: ERROR: +schema "invitetomedia" does not exist \(3 times in a row\)/,
		'saying why it gives up');
	my $rc;
	($rc, $log) = run_once(db => 'noext');
	is($rc, 78, 'no extension: --once exits 78 at once');

	# a role without the grants
	$s = start_sender(role => 'nogrant', args => [ '--poll' => 300 ]);
	($exited, $status) = finish_sender($s, undef, 40);
	$log = sender_log($s);
	ok($exited, 'a role without grants: the daemon gives up');
	is($status >> 8, 78, 'with exit status 78');
	like($log, qr/email_claim failed: ERROR: +permission denied for schema invitetomedia; .*"A database role for the sender"/,
		'the log points to the README recipe for the grants');
	unlike($log, qr/listening/, 'and never says it is listening');
	($rc) = run_once(role => 'nogrant');
	is($rc, 78, 'a role without grants: --once exits 78');

	# a role that may claim but not confirm: each message it sends is sent
	# again after its lease, so claims that work are no recovery
	my $dir = new_mail_dir('half');
	my $id = invite('half@example.org');
	$s = start_sender(dir => $dir, role => 'halfsender',
		args => [ '--lease' => 2, '--timeout' => 1, '--poll' => 1 ]);
	($exited, $status) = finish_sender($s, undef, 60);
	$log = sender_log($s);
	ok($exited, 'email_sent refused: the daemon gives up');
	is($status >> 8, 78, 'with exit status 78');
	is(count_lines($log, qr/email_sent failed: ERROR: +permission denied for function email_sent; /), 3,
		'after three refused confirmations');
	like($log, qr/listening on invitetomedia_email; but email_sent: ERROR: +permission denied/,
		'while claims work it says it listens, but not that all is well');
	is(scalar(mail_files($dir)), 3, 'the message was sent three times, one per lease');
	ok(settle(), 'the sender role delivers it');
}

###########################################################################
# 3, 4. --once and a confirmation that fails: exit 1; the error on one line
###########################################################################
{
	sql(<<'EOSQL');
CREATE FUNCTION public.refuse_sent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sent_at IS NOT NULL AND OLD.sent_at IS NULL THEN
        RAISE EXCEPTION 'simulated outage'
            USING ERRCODE = 'serialization_failure',
                  DETAIL = 'secret-detail quoting a row: zed@example.org',
                  HINT = 'Wait a moment,
then try again.';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER refuse_sent BEFORE UPDATE ON invitetomedia.outbox
    FOR EACH ROW EXECUTE FUNCTION public.refuse_sent();
EOSQL
	my $dir = new_mail_dir('unconfirmed');
	my $id = invite('zed@example.org');
	my ($rc, $log) = run_once(dir => $dir, args => [ '--lease' => 2 ]);
	is(scalar(mail_files($dir)), 1, 'the message was handed to sendmail');
	is($rc, 1, '--once exits 1 when the message could not be confirmed');
	like($log, qr/message $id to z\*\*\*\@example\.org: handed to sendmail, NOT confirmed/,
		'the log says the message was not confirmed');
	like($log, qr/1 message outcome\(s\) could not be recorded/, 'and sums it up at the end');
	like($log, qr/^invitetomedia-sender: email_sent failed: ERROR: +simulated outage; HINT: Wait a moment, then try again\.$/m,
		'the server error on one line: primary message and hint');
	unlike($log, qr/secret-detail|zed\@|DETAIL|CONTEXT/, 'without DETAIL or CONTEXT');
	sql('DROP TRIGGER refuse_sent ON invitetomedia.outbox; DROP FUNCTION public.refuse_sent()');
	ok(wait_until(sub { state_of($id) eq 'pending' }, 10), 'the lease runs out');
	($rc, $log) = run_once(dir => $dir);
	is($rc, 0, 'the next run exits 0');
	is(state_of($id), 'sent', 'and confirms the message');
	my @copies = @{ parse_mail(mail_files($dir)) };
	is(scalar @copies, 2, 'sent twice (at least once)');
	is($copies[0]{message_id}, $copies[1]{message_id}, 'under one Message-ID');
}

###########################################################################
# 5. SIGTERM, SIGHUP: claimed messages not started are handed back
###########################################################################
for my $sig (qw(TERM HUP))
{
	my $dir = new_mail_dir("stop-$sig");
	my @ids = map { invite("stop$_\@example.org") } 1 .. 3;
	my $s = start_sender(dir => $dir, env => { FAKE_SENDMAIL_SLEEP => 3 },
		args => [ '--batch' => 3, '--poll' => 300 ]);
	ok(wait_until(sub { in_flight($dir) > 0 }, 30), "SIG$sig: the sender is sending the first of three");
	is(sql("SELECT string_agg(state, ',') FROM invitetomedia.email_messages
	         WHERE message_id IN (@{[ join ',', @ids ]})"),
		'claimed,claimed,claimed', 'all three are claimed');
	my ($exited, $status) = finish_sender($s, $sig, 30);
	ok($exited, "SIG$sig: the sender stops");
	is($status, 0, "SIG$sig: and exits 0");
	my @sent = grep { state_of($_) eq 'sent' } @ids;
	my @rest = grep { state_of($_) ne 'sent' } @ids;
	is(scalar @sent, 1, 'the message in hand was finished and confirmed');
	is(join(',', map { handed_back_state($_) } @rest), '0|t|t|t,0|t|t|t',
		'the two not started: attempt not counted, due now, unclaimed, no error');
	my $log = sender_log($s);
	is(count_lines($log, qr/: handed back \(stopping\)$/), 2, 'the log says both were handed back');
	like($log, qr/stopped \(SIG$sig\)$/m, "and that SIG$sig stopped it");
	ok(settle(), 'they are delivered later');
}

# a database still at 1.0 has no email_release: a failure is recorded, as before
{
	my $dir = new_mail_dir('stop-old');
	my @ids = map { invite_in('old', "old$_\@example.org") } 1 .. 2;
	my $s = start_sender(dir => $dir, db => 'old', env => { FAKE_SENDMAIL_SLEEP => 3 },
		args => [ '--batch' => 2, '--poll' => 300 ]);
	ok(wait_until(sub { in_flight($dir) > 0 }, 30), '1.0: the sender is sending');
	my ($exited, $status) = finish_sender($s, 'TERM', 30);
	is($status, 0, '1.0: SIGTERM, exit 0');
	my ($rest) = grep { state_of($_, 'old') ne 'sent' } @ids;
	is(sql_in('old', "SELECT attempts, last_error FROM invitetomedia.outbox WHERE message_id = $rest"),
		'1|not attempted: the sender was stopping',
		'1.0: the message not started is handed back with email_failed');
	ok(settle('old'), '1.0: delivered later');
}

###########################################################################
# 6. a parent that ignores SIGCHLD and blocks SIGTERM
###########################################################################
{
	my @wrapper = ('perl', '-e',
		'use POSIX (); POSIX::sigprocmask(POSIX::SIG_BLOCK(), POSIX::SigSet->new(POSIX::SIGTERM(), POSIX::SIGCHLD())) or die "sigprocmask: $!"; $SIG{CHLD} = "IGNORE"; exec @ARGV or die "exec: $!"');
	# what the wrapper hands on through exec
	my ($out, $err) = ('', '');
	IPC::Run::run([ @wrapper, 'grep', '-E', '^Sig(Blk|Ign):', '/proc/self/status' ],
		'>', \$out, '2>', \$err);
	# the low 32 bits: signals 1 to 32
	my %mask = map { /^(\w+):\s*[0-9a-f]*([0-9a-f]{8})$/ ? ($1 => hex($2)) : () } split /\n/, $out;
	ok(($mask{SigIgn} // 0) & (1 << 16), 'the wrapper: SIGCHLD stays ignored across exec');
	ok(($mask{SigBlk} // 0) & (1 << 14), 'the wrapper: SIGTERM stays blocked across exec');

	my $dir = new_mail_dir('sigchld');
	my $s = start_sender(dir => $dir, wrapper => \@wrapper,
		args => [ '--timeout' => 5, '--poll' => 300 ]);
	ok(wait_until(sub { sender_log($s) =~ /listening/ }, 30), 'the sender is listening');
	my $id = invite('child@example.org');
	ok(wait_until(sub { state_of($id) eq 'sent' }, 20), 'a message is delivered and confirmed');
	usleep(500_000);
	is(scalar(mail_files($dir)), 1, 'once');
	my $log = sender_log($s);
	is(count_lines($log, qr/message $id /), 1, 'one log line about it');
	# 'failed' as a word: 2.0's sender names email_failed_all in its notice
	# about the claim function it uses
	unlike($log, qr/timed out|lost track|\bfailed\b/, 'no timeout, nothing failed');
	my ($exited, $status) = finish_sender($s, 'TERM', 15);
	ok($exited, 'SIGTERM stops it although the parent blocked it');
	is($status, 0, 'exit 0');
}

###########################################################################
# 7. started with descriptors 0, 1 and 2 closed
###########################################################################
{
	my $dir = new_mail_dir('closed');
	my $id = invite('closed@example.org');
	my @wrapper = ('perl', '-e',
		'close STDIN; close STDOUT; close STDERR; exec @ARGV or exit 127');
	# --verbose: log lines before and after each query
	my ($rc) = run_once(dir => $dir, wrapper => \@wrapper, args => ['--verbose']);
	is($rc, 0, 'fds 0-2 closed: the sender exits 0');
	is(state_of($id), 'sent', 'the message is confirmed (no log line went to the database)');
	is(scalar(mail_files($dir)), 1, 'and delivered once');
}

###########################################################################
# 8. pointed at a standby: LISTEN fails, reconnections are spaced out
###########################################################################
{
	$node->backup('for_standby');
	my $standby = PostgreSQL::Test::Cluster->new('operator_standby');
	$standby->init_from_backup($node, 'for_standby', has_streaming => 1);
	$standby->start;
	my $s = start_sender(connstr => $standby->connstr('postgres') . ' user=sender',
		args => [ '--poll' => 300 ]);
	usleep(8_000_000);
	my $log = sender_log($s);
	my $tries = count_lines($log, qr/LISTEN failed/);
	note "LISTEN attempts in 8 s: $tries";
	ok($tries >= 2 && $tries <= 5, "LISTEN tried $tries times in 8 s (1, 2, 4 s apart), not every second");
	like($log, qr/LISTEN failed: ERROR: +cannot execute LISTEN during recovery; .*target_session_attrs=read-write/,
		'the log recommends target_session_attrs=read-write');
	like($log, qr/reconnecting in 1 s.*reconnecting in 2 s.*reconnecting in 4 s/s,
		'and says how long it waits');
	ok(running($s), 'the sender keeps trying (a standby may be promoted)');
	my ($exited, $status) = finish_sender($s, 'TERM', 15);
	is($status, 0, 'SIGTERM while waiting: exit 0');
	$standby->stop;
}

###########################################################################
# 9. connection timeouts: added where not set, what is set wins
###########################################################################
{
	my $all = 'connect_timeout=10 keepalives=1 keepalives_idle=30 keepalives_interval=10 '
	  . 'keepalives_count=3 tcp_user_timeout=60000';
	my ($rc, $log) = run_once(args => ['--verbose']);
	like($log, qr/^invitetomedia-sender: connection timeouts: \Q$all\E added by the sender$/m,
		'a connection string without timeouts gets the fallbacks');

	($rc, $log) = run_once(args => ['--verbose'],
		connstr => $node->connstr('postgres') . ' user=sender connect_timeout=3 keepalives_idle=99');
	is($rc, 0, 'connects with timeouts set');
	like($log, qr/connection timeouts: connect_timeout=3 keepalives_idle=99 as set; keepalives=1 keepalives_interval=10 keepalives_count=3 tcp_user_timeout=60000 added by the sender$/m,
		'the values set win, only the others are added');

	($rc, $log) = run_once(args => ['--verbose'], env => { PGCONNECT_TIMEOUT => 7 });
	like($log, qr/connection timeouts: connect_timeout=7 as set; keepalives=1 /m,
		'PGCONNECT_TIMEOUT wins too');

	my $host = $node->host;
	$host =~ s{([^A-Za-z0-9._~-])}{sprintf('%%%02X', ord $1)}ge;
	my $port = $node->port;
	($rc, $log) = run_once(args => ['--verbose'],
		connstr => "postgresql://sender\@$host:$port/postgres?tcp_user_timeout=5000");
	is($rc, 0, 'a URI connects');
	like($log, qr/connection timeouts: tcp_user_timeout=5000 as set; connect_timeout=10 /m,
		'a URI setting wins');

	($rc, $log) = run_once(args => ['--verbose'], connstr => 'postgres',
		env => { PGHOST => $node->host, PGPORT => $node->port, PGUSER => 'sender' });
	is($rc, 0, 'a bare database name connects');
	like($log, qr/connection timeouts: \Q$all\E added by the sender$/m,
		'and gets the fallbacks');
}

###########################################################################
# 10. the mailer must read the whole message; a lone "." is no end
###########################################################################
{
	my $dir = new_mail_dir('unread');
	my $id = invite('unread@example.org');
	my ($rc, $log) = run_once(dir => $dir, sendmail => 'read -r first_line; exit 0');
	is($rc, 0, 'a mailer that reads one line and exits 0: the failure is recorded');
	like($log, qr/message $id to u\*\*\*\@example\.org: failed, will retry: sendmail command exited 0 without reading the whole message \(\d+ of \d+ bytes left unread\)/,
		'the log says the input was not read');
	is(sql("SELECT m.state, o.attempts FROM invitetomedia.email_messages m
	          JOIN invitetomedia.outbox o USING (message_id) WHERE message_id = $id"),
		'pending|1', 'the message is not counted as sent: pending');
	ok(settle(), 'delivered later');

	# fake-sendmail without -i stops at a lone ".", as sendmail does
	my $long = ('a' x 75) . '.';
	my $body = "Hello,\n.\nafter the dot\n$long\nand the end: https://media.example.com/invite/x\n.";
	$id = queue_body('dot@example.org', $body);
	$dir = new_mail_dir('dot');
	($rc, $log) = run_once(dir => $dir, sendmail => "/bin/sh '$fake' -t");
	is($rc, 0, 'a body with lone dots, a mailer run without -i: exit 0');
	is(state_of($id), 'sent', 'sent');
	my ($m) = @{ parse_mail(mail_files($dir)) };
	is($m->{body}, "$body\n", 'the whole body arrives, its dots too');
	is($m->{lone_dot_lines}, 0, 'no line of the message is a lone "."');
	is($m->{cte}, 'quoted-printable', 'in quoted-printable');
	is_deeply($m->{defects}, [], 'no MIME defects');
}

###########################################################################
# 11. the mailer's exit status: retry, or dead at once
###########################################################################
{
	my @cases = (
		[ 'EX_TEMPFAIL (75)', { env => { FAKE_SENDMAIL_EXIT => 75 } }, 'pending', qr/failed, will retry: sendmail command exited with status 75/ ],
		[ 'status 1', { env => { FAKE_SENDMAIL_EXIT => 1 } }, 'pending', qr/failed, will retry: sendmail command exited with status 1:/ ],
		[ 'a signal', { sendmail => 'cat >/dev/null; kill -TERM $$' }, 'pending', qr/failed, will retry: sendmail command killed by signal 15/ ],
		[ 'a timeout', { sendmail => 'cat >/dev/null; sleep 5', args => [ '--timeout' => 1 ] }, 'pending', qr/failed, will retry: sendmail command timed out after 1 s/ ],
		[ 'EX_NOUSER (67)', { env => { FAKE_SENDMAIL_EXIT => 67 } }, 'dead', qr/failed permanently, dead: sendmail command exited with status 67: fake-sendmail: refused/ ],
		[ 'EX_CONFIG (78)', { env => { FAKE_SENDMAIL_EXIT => 78 } }, 'dead', qr/failed permanently, dead: sendmail command exited with status 78/ ],
		[ 'EX_USAGE (64)', { sendmail => "/bin/sh '$fake' -i" }, 'dead', qr/failed permanently, dead: sendmail command exited with status 64: fake-sendmail: no recipients/ ],
	);
	for my $case (@cases)
	{
		my ($what, $o, $state, $line) = @$case;
		my $id = invite('status@example.org');
		my ($rc, $log) = run_once(dir => new_mail_dir("status-$runs"), %$o);
		is($rc, 0, "$what: the failure is recorded");
		is(sql("SELECT m.state, o.attempts FROM invitetomedia.email_messages m
		          JOIN invitetomedia.outbox o USING (message_id) WHERE message_id = $id"),
			"$state|1", "$what: $state after one attempt");
		like($log, $line, "$what: logged");
	}
	ok(settle(), 'what is pending is delivered later');

	# a message that cannot be built: dead at once
	my $id = queue_body('status@example.org', 'x');
	sql("UPDATE invitetomedia.outbox SET to_email = 'not an address' WHERE message_id = $id");
	my ($rc, $log) = run_once();
	is(state_of($id), 'dead', 'a message that cannot be built is dead after one attempt');
	like($log, qr/message $id to \(invalid address\): failed permanently, dead: invalid recipient address/,
		'logged');

	# a 1.0 database has no permanent failures: retried, as before
	$id = invite_in('old', 'status@example.org');
	($rc, $log) = run_once(dir => new_mail_dir('status-old'), db => 'old',
		env => { FAKE_SENDMAIL_EXIT => 67 });
	is(state_of($id, 'old'), 'pending', '1.0: status 67 is retried');
	ok(settle('old'), '1.0: delivered later');
}

###########################################################################
# 12. --from with a display name that needs quoting
###########################################################################
{
	my $dir = new_mail_dir('from');
	invite('from@example.org');
	my ($rc) = run_once(dir => $dir, from => '"Media, Inc." <invites@test.example>');
	is($rc, 0, 'a quoted display name is accepted');
	my ($m) = @{ parse_mail(mail_files($dir)) };
	is_deeply($m->{from}, [ [ 'Media, Inc.', 'invites@test.example' ] ], 'From: the name and address');
	is_deeply($m->{defects}, [], 'no MIME defects');
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
