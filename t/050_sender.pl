# t/050_sender.pl - invitetomedia-sender end to end
#
# A throwaway cluster, the real sender program, and a fake sendmail
# (sender/test/fake-sendmail) that stores each message it is given as a file.
# Messages are checked with Python's email package (sender/test/parse-mail.py),
# a MIME parser independent of the GMime that wrote them.
#
# Every sender in this file connects as a role holding only the documented
# GRANTs (USAGE on the schema, EXECUTE on email_claim, email_release and on
# both forms of email_sent and email_failed).  Claim numbers are tested in
# t/060_claims.pl, what an operator and a service manager see (errors,
# signals, exit statuses, mailer failures) in t/080_sender_operator.pl.
use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use Encode ();
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
my $base_url = 'https://media.example.com/invite/';
my $title = "Caf\x{e9} Talk \x{2014} Live";

# $ITM_SENDER if set, else the sender built in the tree (make -C sender),
# else one on PATH (an installed one)
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

my $node = PostgreSQL::Test::Cluster->new('sender');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

my $tmp = PostgreSQL::Test::Utils::tempdir();

# UTF-8 both ways between this file and psql
sub sql
{
	my ($query) = @_;
	my $out = $node->safe_psql('postgres', Encode::encode('UTF-8', $query));
	return Encode::decode('UTF-8', $out);
}

sub lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

sql(<<"EOSQL");
CREATE EXTENSION invitetomedia CASCADE;
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)
VALUES ('owner', 'owner\@example.com', 'Olga', 'Owner', 'admin');
INSERT INTO invitetomedia.media (media_id, media_type, title, owner_id)
VALUES ('m1', 'webcast', ${\ lit($title)}, 'owner');
INSERT INTO invitetomedia.email_templates
VALUES ('invite', 'You are invited to {MEDIA_TITLE}',
        'Hello {FIRST_NAME} {LAST_NAME}, open {URL} before {EXPIRES_AT}.');
UPDATE invitetomedia.settings
   SET enabled = true, invite_email_template = 'invite',
       link_base_url = '$base_url';

-- the README's recipe for a dedicated sender role
CREATE ROLE sender LOGIN;
GRANT USAGE ON SCHEMA invitetomedia TO sender;
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim(integer, interval),
                          invitetomedia.email_sent(bigint),
                          invitetomedia.email_failed(bigint, text),
                          invitetomedia.email_sent(bigint, integer),
                          invitetomedia.email_failed(bigint, text, integer, boolean),
                          invitetomedia.email_release(bigint, integer)
   TO sender;
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA invitetomedia TO app;
EOSQL

my $connstr = $node->connstr('postgres') . ' user=sender';

# creates an invite with email; returns {invite_id, token, url, message_id,
# message_key}
sub invite
{
	my ($email, $first, $last) = @_;
	my $row = sql(
		sprintf(
			"SELECT invite_id, token, url
			   FROM invitetomedia.invite_create('m1', 'owner', %s, %s, %s,
			                                    'viewer', send_email => true)",
			lit($email), lit($first), lit($last)));
	my ($invite_id, $token, $url) = split /\|/, $row;
	my ($message_id, $message_key) = split /\|/, sql(
		"SELECT message_id, message_key FROM invitetomedia.outbox
		  WHERE invite_id = $invite_id ORDER BY message_id DESC LIMIT 1");
	return {
		message_key => $message_key,
		invite_id => $invite_id,
		token => $token,
		url => $url,
		message_id => $message_id,
		email => $email,
		first => $first,
		last => $last
	};
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
		'--from' => 'Media Invites <invites@test.example>',
		'--domain' => 'test.example',
		@{ $o{args} // [] },
		$o{connstr} // $connstr
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
	my $rc = $? >> 8;
	return ($rc, Encode::decode('UTF-8', slurp($log)));
}

# starts a sender in the background; returns {h, log}
sub start_sender
{
	my (%o) = @_;
	my $log = "$tmp/sender-" . ++$runs . '.log';
	my $h = IPC::Run::start(sender_cmd(%o), '<', \undef, '>', '/dev/null',
		'2>', $log, IPC::Run::timeout(180));
	push @harnesses, $h;
	return { h => $h, log => $log };
}

sub sender_log { return Encode::decode('UTF-8', slurp($_[0]->{log})); }

sub wait_listening
{
	my ($s, $count, $seconds) = @_;
	return wait_until(
		sub {
			my @l = sender_log($s) =~ /listening on invitetomedia_email/g;
			return @l >= $count;
		},
		$seconds);
}

# sends sig to a background sender and waits for it; returns its wait status
sub stop_sender
{
	my ($s, $sig) = @_;
	$s->{h}->signal($sig);
	eval { $s->{h}->finish; };
	@harnesses = grep { $_ != $s->{h} } @harnesses;
	return $s->{h}->full_result(0);
}

sub state_of
{
	my ($message_id) = @_;
	return sql(
		"SELECT state FROM invitetomedia.email_messages WHERE message_id = $message_id");
}

sub outbox_all_sent
{
	return sql(
		"SELECT count(*) = 0 FROM invitetomedia.outbox WHERE sent_at IS NULL AND dead_at IS NULL"
	) eq 't';
}

###########################################################################
# 0. the command line
###########################################################################
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $sender, '--help' ], '>', \$out, '2>', \$err);
	is($? >> 8, 0, '--help exits 0');
	like($out, qr/--sendmail.*--once/s, '--help prints the options');
	IPC::Run::run([ $sender, '--version' ], '>', \$out, '2>', \$err);
	like($out, qr/^invitetomedia-sender \d/, '--version');
	IPC::Run::run([ $sender, '--batch', '0' ], '>', \$out, '2>', \$err);
	is($? >> 8, 64, 'a bad option value exits 64 (EX_USAGE)');
	IPC::Run::run([ $sender, '--from', "x\@y.example\r\nBcc: z\@w.example", '--once' ],
		'>', \$out, '2>', \$err);
	is($? >> 8, 64, 'a --from with CR/LF is refused');
	# --from is one address, bare or in <...> after an optional name;
	# nothing is guessed from what does not parse
	for my $bad ('a@b@c.com', 'Media <a@b.com', 'Media a@b.com>', 'Media <a@b.com> x',
		'A <a@b.com> <c@d.com>', 'a@b.com, c@d.com', '<a@b.com', '"Media <a@b.com>',
		'Media "Inc" <a@b.com>', '<>', 'a@b.com (Media)', '')
	{
		IPC::Run::run([ $sender, '--from', $bad, '--once', 'dbname=nonexistent' ],
			'>', \$out, '2>', \$err);
		is($? >> 8, 64, "--from '$bad' is refused with 64 (EX_USAGE)");
		like($err, qr/--from/, "--from '$bad': the message names --from");
	}
	like($err, qr/^invitetomedia-sender: --from (must be|address)/m, 'with a clear message');
	IPC::Run::run([ $sender, '--once', "host=x 'port" ], '>', \$out, '2>', \$err);
	is($? >> 8, 64, 'a connection string that does not parse exits 64');
	like($err, qr/invalid connection string/, 'saying so');
}

###########################################################################
# 1. one run delivers each message once, as valid MIME
###########################################################################
my %by_email;
{
	my $dir = new_mail_dir('once');
	my @invites = (
		invite('zoe@example.org', "Zo\x{eb}", "\x{c5}ngstr\x{f6}m"),
		invite('jose@example.org', "Jos\x{e9}", "N\x{fa}\x{f1}ez"),
		invite('url@example.org', '{URL}', 'Tricky {URL}'),
		invite('ann@example.org', 'Ann', 'Lee'),
		invite('obrien@example.org', 'Bob "Builder"', "O'Brien, Jr."));
	%by_email = map { $_->{email} => $_ } @invites;
	for my $i (@invites)
	{
		$i->{to_name} = sql(
			"SELECT to_name FROM invitetomedia.outbox WHERE message_id = $i->{message_id}");
	}
	ok((grep { $_->{message_id} } @invites) == 5, 'each invite queued a message');

	my ($rc, $log) = run_once(dir => $dir);
	is($rc, 0, 'sender --once exits 0');
	my @files = mail_files($dir);
	is(scalar @files, 5, 'five messages handed to sendmail, once each');

	my $mails = parse_mail(@files);
	my %seen;
	for my $m (@$mails)
	{
		my $addr = $m->{to}[0][1] // '';
		my $i = $by_email{$addr};
		ok($i, "message to $addr belongs to an invite") or next;
		$seen{$addr}++;
		is_deeply($m->{defects}, [], "$addr: no MIME defects");
		ok($m->{headers_ascii}, "$addr: header bytes are ASCII (RFC 2047)");
		ok($m->{max_line} <= 998, "$addr: no line over 998 octets");
		is($m->{mime_version}, '1.0', "$addr: MIME-Version");
		like($i->{message_key}, qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
			"$addr: the outbox gave the message a key");
		is($m->{message_id}, "<itm-$i->{message_key}\@test.example>",
			"$addr: Message-ID carries the outbox message_key");
		ok($m->{date_ok}, "$addr: Date parses, with a time zone");
		is_deeply($m->{from}, [ [ 'Media Invites', 'invites@test.example' ] ],
			"$addr: From");
		is(scalar @{ $m->{to} }, 1, "$addr: exactly one recipient");
		is($m->{to}[0][0], $i->{to_name}, "$addr: To display name decodes to the outbox name");
		like($m->{to}[0][0], qr/\Q$i->{first}\E.*\Q$i->{last}\E/,
			"$addr: display name has first and last name");
		is($m->{subject}, "You are invited to $title", "$addr: Subject decodes");
		is($m->{content_type}, 'text/plain', "$addr: text/plain");
		is($m->{charset}, 'utf-8', "$addr: charset utf-8");
		like($m->{cte}, qr/^(quoted-printable|base64)$/, "$addr: QP or base64");
		is($m->{auto_submitted}, 'auto-generated', "$addr: Auto-Submitted");
		like($m->{body}, qr/^Hello \Q$i->{first} $i->{last}\E, open \Q$i->{url}\E before /,
			"$addr: body decodes, names literal, link present");
		my @links = $m->{body} =~ m{\Q$base_url\E([A-Za-z0-9_\-]+)}g;
		is_deeply(\@links, [ $i->{token} ], "$addr: one link, with the token");
		$i->{link_token} = $links[0];
	}
	is(scalar keys %seen, 5, 'every invitee got a message');

	my $url_mail = (grep { ($_->{to}[0][1] // '') eq 'url@example.org' } @$mails)[0];
	like($url_mail->{to}[0][0], qr/^\{URL\} Tricky \{URL\}$/,
		'{URL} in a name stays literal in To');
	like($url_mail->{body}, qr/^Hello \{URL\} Tricky \{URL\}, open https:/,
		'{URL} in a name is not expanded in the body');

	for my $i (@invites)
	{
		next unless $i->{link_token};
		is(sql(sprintf("SELECT status FROM invitetomedia.invite_consume(%s, %s)",
					lit($i->{link_token}), lit($i->{email}))),
			'ok', "$i->{email}: the emailed link consumes");
	}
	is(sql("SELECT count(*) FILTER (WHERE sent_at IS NOT NULL AND body IS NULL
	                                  AND attempts = 1), count(*)
	          FROM invitetomedia.outbox"),
		'5|5', 'outbox: all sent, bodies scrubbed, one attempt each');

	my @lines = grep { /message \d+ to / } split /\n/, $log;
	is(scalar(grep { /: sent$/ } @lines), 5, 'one log line per message');
	unlike($log, qr{https?://|itm_}, 'the log holds no link or token');
	unlike($log, qr/zoe\@example\.org|Zo\x{eb}/, 'the log holds no full address or name');
	like($log, qr/message $by_email{'zoe@example.org'}{message_id} to z\*\*\*\@example\.org: sent/,
		'the log shows the message id and masked recipient');
}

###########################################################################
# header injection: the database refuses CR/LF, the sender does not rely on it
###########################################################################
{
	my $dir = new_mail_dir('inject');
	my $invite_id = $by_email{'ann@example.org'}{invite_id};
	# 2.0: an outbox row names its tenant and site (the invite's) and an
	# id (the API draws it; no default), so a direct write gives them
	my $direct = sub {
		my ($values) = @_;
		return qq{INSERT INTO invitetomedia.outbox (tenant_id, site_id, message_id, invite_id,
		                                   to_email, to_name, subject, body)
		SELECT i.tenant_id, i.site_id, 1 + floor(random() * 1e15)::int8, i.invite_id,
		       v.to_email, v.to_name, v.subject, v.body
		  FROM (VALUES $values) v (to_email, to_name, subject, body),
		       invitetomedia.invites i
		 WHERE i.invite_id = $invite_id};
	};
	# the subject: the outbox refuses control characters (since 1.0.1), so
	# the sender never meets one
	my ($rc, $out, $err) = $node->psql('postgres',
		$direct->(qq{('inj0\@example.org', 'Eve', E'Hi\\nX-Injected: yes', 'Hello, open ${base_url}x now.')}));
	like($err, qr/violates check constraint "outbox_subject_single_line"/,
		'CR/LF in a subject: the outbox refuses it');
	# names and addresses: the outbox takes them, the sender must not trust them
	sql($direct->(qq{('inj1\@example.org', E'Eve\\r\\nBcc: victim\@evil.example',
	                  'Hi', 'Hello, open ${base_url}x now.'),
	                 (E'inj2\@example.org\\nBcc: victim\@evil.example', 'Eve',
	                  'Hi', 'Hello, open ${base_url}x now.'),
	                 ('inj3\@example.org, victim\@evil.example', 'Eve',
	                  'Hi', 'Hello, open ${base_url}x now.')}));
	{
		my ($src, $log) = run_once(dir => $dir);
		is($src, 0, 'sender --once exits 0');
		my @files = mail_files($dir);
		is(scalar @files, 1, 'only the message with a valid address is sent');
		my $m = parse_mail(@files)->[0];
		is_deeply($m->{to}, [ [ 'Eve Bcc: victim@evil.example', 'inj1@example.org' ] ],
			'CR/LF in a name: one recipient, the name on one line');
		ok(!(grep { /^(Bcc|X-Injected)$/i } @{ $m->{header_names} }),
			'no injected header');
		is(sql("SELECT count(*) FROM invitetomedia.outbox
		         WHERE to_email LIKE 'inj%' AND sent_at IS NULL
		           AND last_error LIKE 'invalid recipient address%'"),
			2, 'unsafe recipient addresses are refused with email_failed');
		is(sql("SELECT string_agg(m.state || '/' || m.attempts, ',')
		          FROM invitetomedia.email_messages m
		         WHERE to_email LIKE 'inj%' AND last_error IS NOT NULL"),
			'dead/1,dead/1', 'as permanent failures: dead after one attempt');
	}
	sql("DELETE FROM invitetomedia.outbox WHERE to_email LIKE 'inj%'");
}

###########################################################################
# 2. daemon: woken by NOTIFY; SIGTERM finishes the message in hand
###########################################################################
{
	my $dir = new_mail_dir('daemon');
	my $s = start_sender(
		dir => $dir,
		env => { FAKE_SENDMAIL_SLEEP => '1.5' },
		args => [ '--poll' => 300 ]);
	ok(wait_listening($s, 1, 30), 'daemon is listening');

	my $t0 = time();
	my $i = invite('notify@example.org', 'Nora', 'Tify');
	ok(wait_until(sub { mail_files($dir) == 1 }, 15),
		'a new invite is delivered through NOTIFY (fallback poll is 300 s)');
	note sprintf('delivered after %.1f s', time() - $t0);
	ok(wait_until(sub { state_of($i->{message_id}) eq 'sent' }, 10), 'and confirmed');

	my $j = invite('term@example.org', 'Terry', 'Term');
	ok(wait_until(sub { in_flight($dir) > 0 }, 15), 'second message is in sendmail');
	my $status = stop_sender($s, 'TERM');
	is($status, 0, 'SIGTERM: the sender exits 0');
	is(scalar(mail_files($dir)), 2, 'the message in hand was finished');
	is(state_of($j->{message_id}), 'sent', 'and confirmed before exiting');
}

###########################################################################
# 3. killed in the middle of a batch, restarted: nothing lost, at most the
#    message in hand sent twice
###########################################################################
{
	my $dir = new_mail_dir('kill');
	my @invites = map { invite("kill$_\@example.org", 'Kim', "Kill $_") } 1 .. 8;
	my $first_sender = start_sender(
		dir => $dir,
		env => { FAKE_SENDMAIL_SLEEP => '0.7' },
		args => [ '--batch' => 4, '--lease' => 3, '--poll' => 1, '--timeout' => 2 ]);
	ok(wait_until(sub { mail_files($dir) >= 2 && in_flight($dir) > 0 }, 30),
		'first sender is in the middle of its work');
	my $status = stop_sender($first_sender, 'KILL');
	is($status & 127, 9, 'first sender killed with SIGKILL');
	my ($sent_before, $claimed) = split /\|/, sql(
		"SELECT count(*) FILTER (WHERE state = 'sent'),
		        count(*) FILTER (WHERE state = 'claimed')
		   FROM invitetomedia.email_messages WHERE to_email LIKE 'kill%'");
	note "at the kill: $sent_before sent, $claimed claimed";
	ok($sent_before < 8, "killed with work left ($sent_before of 8 confirmed)");
	ok($claimed > 0, 'killed holding claimed messages (in the middle of a batch)');

	my $second_sender = start_sender(dir => $dir,
		args => [ '--lease' => 3, '--poll' => 1, '--timeout' => 2 ]);
	ok(wait_until(sub { outbox_all_sent() }, 40), 'restarted sender delivers the rest');
	is(stop_sender($second_sender, 'TERM'), 0, 'restarted sender stops cleanly');
	# let the orphaned fake sendmail of the killed sender finish
	wait_until(sub { in_flight($dir) == 0 }, 10);

	my %count;
	$count{ $_->{message_id} }++ for @{ parse_mail(mail_files($dir)) };
	my @missing = grep { !$count{"<itm-$_->{message_key}\@test.example>"} } @invites;
	is(scalar @missing, 0, 'every message was delivered');
	my $extra = 0;
	$extra += $_ - 1 for values %count;
	ok($extra <= 1, "duplicates: $extra (at most the message in hand)");
}

###########################################################################
# 4. two senders at once: no message sent by both
###########################################################################
{
	my $dir = new_mail_dir('two');
	sql("SELECT count(*) FROM generate_series(1, 40) g,
	        invitetomedia.invite_create('m1', 'owner', 'bulk' || g || '\@example.org',
	                                    'Bulk', g::text, 'viewer', send_email => true)");
	my @s = map {
		start_sender(
			dir => $dir,
			env => { FAKE_SENDMAIL_SLEEP => '0.05' },
			args => [ '--once', '--batch' => 3 ])
	} 1 .. 2;
	for my $s (@s)
	{
		eval { $s->{h}->finish; };
		is($s->{h}->full_result(0), 0, 'concurrent sender exits 0');
		@harnesses = grep { $_ != $s->{h} } @harnesses;
	}
	my %count;
	$count{ $_->{message_id} }++ for @{ parse_mail(mail_files($dir)) };
	is(scalar keys %count, 40, 'all 40 messages delivered');
	is(scalar(grep { $_ > 1 } values %count), 0, 'no message delivered twice');
	my @sent = map { scalar(() = sender_log($_) =~ /: sent$/mg) } @s;
	ok($sent[0] > 0 && $sent[1] > 0, "both senders worked ($sent[0] + $sent[1])");
	is($sent[0] + $sent[1], 40, 'and together sent each message once');
	ok(outbox_all_sent(), 'outbox drained');
}

###########################################################################
# 5. sendmail fails: retried with growing backoff, then dead
###########################################################################
{
	my $dir = new_mail_dir('fail');
	sql("UPDATE invitetomedia.settings
	        SET email_retry_delay = '1 second', email_max_attempts = 3");
	my $i = invite('fail@example.org', 'Fay', 'Ling');
	my $id = $i->{message_id};
	my @delays;
	for my $attempt (1 .. 3)
	{
		ok(wait_until(sub {
			sql("SELECT next_attempt_at <= now() FROM invitetomedia.outbox
			      WHERE message_id = $id") eq 't' }, 10),
			"attempt $attempt is due");
		my ($rc, $log) = run_once(dir => $dir, env => { FAKE_SENDMAIL_FAIL => 1 });
		is($rc, 0, "attempt $attempt: sender exits 0");
		like($log, qr/message $id to f\*\*\*\@example\.org: failed/, "attempt $attempt logged");
		my ($attempts, $delay, $state, $error) = split /\|/, sql(
			"SELECT o.attempts, extract(epoch FROM o.next_attempt_at - now()),
			        m.state, o.last_error
			   FROM invitetomedia.outbox o
			   JOIN invitetomedia.email_messages m USING (message_id)
			  WHERE o.message_id = $id");
		is($attempts, $attempt, "attempt $attempt counted");
		like($error, qr/^sendmail command exited with status 75: fake-sendmail: 451 4\.3\.0 relay unavailable/,
			"attempt $attempt: last_error has the exit status and first stderr line");
		unlike($error, qr/second line/, 'only the first line of stderr is kept');
		is($state, $attempt < 3 ? 'pending' : 'dead',
			"attempt $attempt: " . ($attempt < 3 ? 'pending' : 'dead'));
		push @delays, $delay;
	}
	note "delays: @delays";
	ok($delays[0] > 0 && $delays[0] <= 1.05, 'first retry after about 1 s');
	ok($delays[1] > 1.05 && $delays[1] <= 2.05, 'second retry after about 2 s');
	ok($delays[1] - $delays[0] > 0.5, 'backoff grows');
	is(scalar(mail_files($dir)), 0, 'nothing was delivered');
	is(sql("SELECT messages FROM invitetomedia.email_queue WHERE state = 'dead'"),
		1, 'email_queue shows the dead message');
	is(sql("SELECT dead_at IS NOT NULL AND sent_at IS NULL AND last_error IS NOT NULL
	          FROM invitetomedia.email_messages WHERE message_id = $id"),
		't', 'email_messages: dead_at and last_error set');
	sql("UPDATE invitetomedia.settings
	        SET email_retry_delay = '1 minute', email_max_attempts = 8");
}

###########################################################################
# 6. the server restarts under a running sender
###########################################################################
{
	my $dir = new_mail_dir('restart');
	my $s = start_sender(dir => $dir, args => [ '--poll' => 300 ]);
	ok(wait_listening($s, 1, 30), 'daemon is listening');
	$node->restart;
	my $i = invite('restart@example.org', 'Rex', 'Start');
	ok(wait_until(sub { mail_files($dir) == 1 }, 45),
		'a message created after the restart is delivered');
	ok(wait_until(sub { state_of($i->{message_id}) eq 'sent' }, 10), 'and confirmed');
	like(sender_log($s), qr/connection lost/, 'the sender noticed the restart');
	ok(wait_listening($s, 2, 10), 'and listens again');
	is(stop_sender($s, 'TERM'), 0, 'then stops cleanly');
}

###########################################################################
# 7. privileges: the sender role runs on its GRANTs alone and reads no body
###########################################################################
{
	my ($rc, $out, $err) = $node->psql('postgres',
		'SELECT body FROM invitetomedia.outbox',
		extra_params => [ '-U', 'sender' ]);
	isnt($rc, 0, 'the sender role cannot SELECT body FROM invitetomedia.outbox');
	like($err, qr/permission denied/, 'permission denied');
	($rc, $out, $err) = $node->psql('postgres',
		'SELECT * FROM invitetomedia.email_claim(1)',
		extra_params => [ '-U', 'app' ]);
	like($err, qr/permission denied/, 'a role without the GRANTs cannot claim');
	($rc, $out, $err) = $node->psql('postgres',
		'SELECT * FROM invitetomedia.email_messages',
		extra_params => [ '-U', 'app' ]);
	like($err, qr/permission denied/, 'nor read the queue');
	is(sql("SELECT count(*) FROM invitetomedia.outbox WHERE body IS NOT NULL AND sent_at IS NOT NULL"),
		0, 'no body is kept for a sent message');
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
