# t/122_v2_sender.pl - one sender serves every tenant (2.0, issue 22;
# docs/design-2.0.md, section 8)
#
# A 2.0 database with two tenants besides the default one: acme (sites
# acme-kms, acme-canvas) and globex (site globex-kms).  acme-kms and
# globex-kms set their own from_address and message_id_domain, acme-canvas
# leaves them NULL (the sender's --from and --domain).  Invites are made
# with send_email => true through invite_create_at as each tenant's role.
# One real sender (capture mode: sender/test/fake-sendmail stores each
# message as a file, parsed by sender/test/parse-mail.py, as in
# t/050_sender.pl) connects as a platform role granted the cross-tenant
# functions only (email_claim_all, email_sent_all, email_failed_all,
# email_release_all).
#
# The checks:
#   1  one --once run delivers every tenant's message exactly once (a
#      second run finds nothing), each with its site's From and its site's
#      Message-ID domain (--from and --domain where the site sets none),
#      the Message-ID carrying the message's key; two tenants' messages
#      with the same message_id are each confirmed as their own (the
#      confirmations name the tenant); the log names each tenant
#   2  a mailer refusal of one tenant's message retries after that site's
#      email_retry_delay; a site with email_max_attempts 1 makes its failed
#      message dead; the other messages of the run are sent; due again,
#      the failed one is delivered
#   3  a tenant's role without EXECUTE on the cross-tenant functions cannot
#      call them (42501); PUBLIC may not execute them; a sender running as
#      that role falls back to email_claim_sites, says so, and delivers its
#      own tenant's mail only
#   4  the cross-tenant functions: argument checks, a superseded claim,
#      release, and a tenant that does not own the message id
use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run ();
use JSON::PP ();

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = abs_path(File::Spec->catdir(dirname(__FILE__), '..'));
my $fake = "$top/sender/test/fake-sendmail";
my $parser = "$top/sender/test/parse-mail.py";

# $ITM_SENDER if set, else the sender built in the tree (make -C sender),
# else one on PATH, as in t/050_sender.pl
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

my $node = PostgreSQL::Test::Cluster->new('v2sender');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;
my $tmp = PostgreSQL::Test::Utils::tempdir();

sub sql { return $node->safe_psql('postgres', shift); }
sub as { my ($role, $q) = @_; return sql("SET ROLE $role; $q"); }

# "SQLSTATE message" of a statement run as a role, or 'ok'
sub try_as
{
	my ($role, $q) = @_;
	$q =~ s/'/''/g;
	return as($role, "SELECT public.try('$q')");
}

sql(q{
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
is(sql(q{SELECT extversion FROM pg_extension WHERE extname = 'invitetomedia'}), '2.0', 'a 2.0 database');

my $ta = sql(q{SELECT invitetomedia.tenant_create('acme')});
my $tb = sql(q{SELECT invitetomedia.tenant_create('globex')});
ok($ta ne $tb && $ta > 1 && $tb > 1, "two tenants: $ta and $tb");

sql(qq{
INSERT INTO invitetomedia.sites (site_id, tenant_id, enabled, link_base_url,
                                 from_address, message_id_domain, email_retry_delay, email_max_attempts) VALUES
    ('acme-kms', $ta, true, 'https://kms.acme.example/i/', 'media\@acme.example', 'mail.acme.example', '1 hour', 8),
    ('acme-canvas', $ta, true, 'https://canvas.acme.example/i/', NULL, NULL, '1 minute', 1),
    ('globex-kms', $tb, true, 'https://kms.globex.example/i/', 'noreply\@globex.example', 'globex.example', '7 minutes', 8);
UPDATE invitetomedia.tenants SET default_site_id = 'acme-kms' WHERE tenant_id = $ta;
UPDATE invitetomedia.tenants SET default_site_id = 'globex-kms' WHERE tenant_id = $tb;
INSERT INTO invitetomedia.users (tenant_id, user_id, email, first_name, last_name, role) VALUES
    ($ta, 'owner', 'owner\@acme.example', 'Ann', 'Acme', 'admin'),
    ($tb, 'owner', 'owner\@globex.example', 'Gus', 'Globex', 'admin');
INSERT INTO invitetomedia.media (tenant_id, media_id, media_type, title, owner_id) VALUES
    ($ta, 'vid', 'webcast', 'Acme all-hands', 'owner'),
    ($tb, 'vid', 'webcast', 'Globex all-hands', 'owner');
INSERT INTO invitetomedia.email_templates (tenant_id, site_id, name, subject, body) VALUES
    ($ta, 'acme-kms', 'invite', 'KMS: {MEDIA_TITLE}', 'Open {URL}'),
    ($ta, 'acme-canvas', 'invite', 'Canvas: {MEDIA_TITLE}', 'Open {URL}'),
    ($tb, 'globex-kms', 'invite', 'Globex: {MEDIA_TITLE}', 'Open {URL}');
UPDATE invitetomedia.sites SET invite_email_template = 'invite'
 WHERE site_id IN ('acme-kms', 'acme-canvas', 'globex-kms');

-- each tenant's application role, and acme's may run a sender of its own
CREATE ROLE app_a LOGIN; CREATE ROLE app_b LOGIN;
INSERT INTO invitetomedia.tenant_roles (role_name, tenant_id) VALUES ('app_a', $ta), ('app_b', $tb);
GRANT USAGE ON SCHEMA invitetomedia TO app_a, app_b;
GRANT EXECUTE ON FUNCTION
    invitetomedia.invite_create_at(text, text, text, text, text, text, text, boolean, timestamptz)
    TO app_a, app_b;
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim_sites(integer, interval),
                          invitetomedia.email_sent(bigint, integer),
                          invitetomedia.email_failed(bigint, text, integer, boolean),
                          invitetomedia.email_release(bigint, integer)
    TO app_a;

-- the platform's sender: the cross-tenant functions, nothing else
CREATE ROLE platform_sender LOGIN;
GRANT USAGE ON SCHEMA invitetomedia TO platform_sender;
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim_all(integer, interval),
                          invitetomedia.email_sent_all(integer, bigint, integer),
                          invitetomedia.email_failed_all(integer, bigint, text, integer, boolean),
                          invitetomedia.email_release_all(integer, bigint, integer)
    TO platform_sender;

CREATE ROLE nobody LOGIN;
GRANT USAGE ON SCHEMA invitetomedia TO nobody;
});

my %tenant_of_site = ('acme-kms' => $ta, 'acme-canvas' => $ta, 'globex-kms' => $tb);
my %role_of_tenant = ($ta => 'app_a', $tb => 'app_b');

# an invite with mail at a site, as its tenant's role; returns the outbox
# row: {message_id, message_key, tenant_id, site_id, email}
sub invite_at
{
	my ($site, $email) = @_;
	my $t = $tenant_of_site{$site};
	my $id = as($role_of_tenant{$t},
		"SELECT invite_id FROM invitetomedia.invite_create_at('$site', 'vid', 'owner', '$email',"
		  . " 'First', 'Last', 'viewer', true)");
	my ($mid, $key, $tid, $sid) = split /\|/,
	  sql("SELECT message_id, message_key, tenant_id, site_id FROM invitetomedia.outbox"
		  . " WHERE tenant_id = $t AND invite_id = $id");
	die "no outbox row for invite $id at $site" unless defined $sid;
	return { message_id => $mid, message_key => $key, tenant_id => $tid, site_id => $sid, email => $email };
}

sub mail_files
{
	my ($dir) = @_;
	opendir(my $dh, $dir) or die "opendir $dir: $!";
	my @files = sort grep { /\.eml$/ } readdir $dh;
	closedir $dh;
	return map { "$dir/$_" } @files;
}

sub parse_mail
{
	my @files = @_;
	return [] unless @files;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'python3', $parser, @files ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(60))
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

# A mailer that refuses (EX_TEMPFAIL) every message to an address starting
# with "fail-" and hands the others to fake-sendmail.
my $picky = "$tmp/picky-sendmail";
open(my $ph, '>', $picky) or die "$picky: $!";
print $ph <<"EOS";
#!/bin/sh
set -u
t=\$(mktemp)
cat > "\$t"
if grep -q '<fail-' "\$t"; then
    rm -f "\$t"
    echo "picky-sendmail: 451 4.3.0 refused (simulated)" >&2
    exit 75
fi
/bin/sh '$fake' "\$@" < "\$t"
rc=\$?
rm -f "\$t"
exit \$rc
EOS
close $ph;

# one --once run of the sender as a role into a new directory; returns
# (exit status, log, [parsed mails])
my $runs = 0;

sub run_sender
{
	my ($role) = @_;
	my $dir = "$tmp/mail-" . ++$runs;
	mkdir $dir or die "mkdir $dir: $!";
	my $log = "$tmp/sender-$runs.log";
	IPC::Run::run(
		[
			'env', "FAKE_MAIL_DIR=$dir", $sender,
			'--sendmail' => "/bin/sh '$picky' -t -i",
			'--from' => 'Platform Mail <platform@invites.example>',
			'--domain' => 'platform.example',
			'--once',
			$node->connstr('postgres') . " user=$role"
		],
		'<', \undef, '>', '/dev/null', '2>', $log, IPC::Run::timeout(90));
	my $rc = $? >> 8;
	return ($rc, slurp($log), parse_mail(mail_files($dir)));
}

###########################################################################
# 1. every tenant's mail, once, with its site's identity
###########################################################################
my @msgs = (
	invite_at('acme-kms', 'k1@people.example'),
	invite_at('acme-kms', 'k2@people.example'),
	invite_at('acme-canvas', 'c1@people.example'),
	invite_at('globex-kms', 'g1@people.example'),
	invite_at('globex-kms', 'g2@people.example'));

# Two tenants' messages with one id: outbox ids are unique within a tenant
# only, and a confirmation that forgot the tenant would confirm the wrong
# one, or both.
sql("UPDATE invitetomedia.outbox SET message_id = 4242 WHERE tenant_id = $ta AND message_id = $msgs[0]{message_id}");
sql("UPDATE invitetomedia.outbox SET message_id = 4242 WHERE tenant_id = $tb AND message_id = $msgs[3]{message_id}");
$msgs[0]{message_id} = $msgs[3]{message_id} = 4242;
is(sql("SELECT count(*) FROM invitetomedia.outbox WHERE message_id = 4242"), '2',
	'1: two tenants\' messages share message_id 4242');

my %want = (
	'acme-kms' => { from => [ '', 'media@acme.example' ], domain => 'mail.acme.example' },
	'acme-canvas' => { from => [ 'Platform Mail', 'platform@invites.example' ], domain => 'platform.example' },
	'globex-kms' => { from => [ '', 'noreply@globex.example' ], domain => 'globex.example' });

my ($rc, $log, $mails) = run_sender('platform_sender');
is($rc, 0, '1: the platform sender --once exits 0') or diag($log);
like($log, qr/serving every tenant \(email_claim_all\)/, '1: it says it serves every tenant');
is(scalar @$mails, 5, '1: five messages handed to sendmail');
my %got;
push @{ $got{ $_->{to}[0][1] // '' } }, $_ for @$mails;
for my $m (@msgs)
{
	my $site = $m->{site_id};
	my $copies = $got{ $m->{email} } // [];
	is(scalar @$copies, 1, "1: $m->{email} ($site) got exactly one message");
	my $mail = $copies->[0] // {};
	is_deeply($mail->{from}, [ $want{$site}{from} ], "1: $m->{email}: From is $site\'s");
	is($mail->{message_id}, "<itm-$m->{message_key}\@$want{$site}{domain}>",
		"1: $m->{email}: Message-ID is the message key at $site\'s domain");
	is_deeply($mail->{defects} // ['missing'], [], "1: $m->{email}: no MIME defects");
	like($log, qr/^invitetomedia-sender: message \Q$m->{message_id}\E \(tenant $m->{tenant_id}, site \Q$site\E\) to \w\*\*\*\@people\.example: sent$/m,
		"1: $m->{email}: the log line names tenant and site");
}
is(sql(q{SELECT count(*) FILTER (WHERE sent_at IS NOT NULL AND attempts = 1 AND body IS NULL)
                || '/' || count(*) FROM invitetomedia.outbox}),
	'5/5', '1: every message is confirmed sent, after one attempt, its body scrubbed');
is(sql(q{SELECT string_agg(tenant_id || ':' || (sent_at IS NOT NULL), ',' ORDER BY tenant_id)
           FROM invitetomedia.outbox WHERE message_id = 4242}),
	"$ta:true,$tb:true", '1: both messages with id 4242 are confirmed, each as its own tenant\'s');
($rc, $log, $mails) = run_sender('platform_sender');
is($rc . ' ' . scalar(@$mails), '0 0', '1: a second run delivers nothing again');

###########################################################################
# 2. a failure retries after its own site's delay
###########################################################################
my $ok_k = invite_at('acme-kms', 'k3@people.example');
my $fail_k = invite_at('acme-kms', 'fail-k@people.example');
my $fail_g = invite_at('globex-kms', 'fail-g@people.example');
my $fail_c = invite_at('acme-canvas', 'fail-c@people.example');
my $ok_g = invite_at('globex-kms', 'g3@people.example');
($rc, $log, $mails) = run_sender('platform_sender');
is($rc, 0, '2: a run with refused messages exits 0 (their failures are recorded)') or diag($log);
is(join(',', sort map { $_->{to}[0][1] } @$mails), 'g3@people.example,k3@people.example',
	'2: the messages the mailer took are delivered');

sub outbox_row
{
	my ($m) = @_;
	return sql("SELECT CASE WHEN sent_at IS NOT NULL THEN 'sent' WHEN dead_at IS NOT NULL THEN 'dead' ELSE 'pending' END"
		  . " || ' ' || attempts || ' ' || round(extract(epoch FROM next_attempt_at - now()))"
		  . " || ' ' || COALESCE(last_error LIKE '%451 4.3.0 refused%', false)"
		  . " FROM invitetomedia.outbox WHERE tenant_id = $m->{tenant_id} AND message_id = $m->{message_id}");
}
my ($st, $att, $wait, $err) = split / /, outbox_row($fail_g);
is("$st $att $err", 'pending 1 true', '2: globex\'s refused message: pending after one attempt, the mailer\'s error kept');
ok($wait > 400 && $wait <= 420, "2: ... due again after globex-kms's 7 minutes ($wait s)");
($st, $att, $wait, $err) = split / /, outbox_row($fail_k);
is("$st $att $err", 'pending 1 true', '2: acme-kms\'s refused message: pending after one attempt');
ok($wait > 3580 && $wait <= 3600, "2: ... due again after acme-kms's hour ($wait s)");
($st, $att) = split / /, outbox_row($fail_c);
is("$st $att", 'dead 1', '2: acme-canvas\'s refused message: dead after its site\'s one attempt');
like($log, qr/message \Q$fail_g->{message_id}\E \(tenant $tb, site globex-kms\) to f\*\*\*\@people\.example: failed, will retry: .*451 4\.3\.0/,
	'2: the log names the tenant of the retried message');
like($log, qr/message \Q$fail_c->{message_id}\E \(tenant $ta, site acme-canvas\) to f\*\*\*\@people\.example: failed, dead \(no more attempts\)/,
	'2: ... and of the dead one');

# due again, and the mailer takes it now: delivered, on its second attempt
sql("UPDATE invitetomedia.outbox SET to_email = 'later-g\@people.example', next_attempt_at = now()"
	  . " WHERE tenant_id = $tb AND message_id = $fail_g->{message_id}");
($rc, $log, $mails) = run_sender('platform_sender');
is(join(',', map { $_->{to}[0][1] } @$mails), 'later-g@people.example',
	'2: due again, the retried message is delivered (and nothing else)');
is(join(' ', (split / /, outbox_row($fail_g))[0, 1]), 'sent 2',
	'2: ... sent on its second attempt');

###########################################################################
# 3. the cross-tenant functions are the platform's
###########################################################################
for my $f ('email_claim_all(integer, interval)', 'email_sent_all(integer, bigint, integer)',
	'email_failed_all(integer, bigint, text, integer, boolean)', 'email_release_all(integer, bigint, integer)')
{
	is(sql("SELECT has_function_privilege('public', 'invitetomedia.$f', 'EXECUTE')"), 'f',
		"3: PUBLIC may not execute $f");
	like(sql("SELECT obj_description('invitetomedia.$f'::regprocedure)"), qr/^CROSS-TENANT, for the platform's sender role only/,
		"3: $f says it is cross-tenant");
}
my $queued = invite_at('globex-kms', 'g4@people.example');
for my $role ('app_a', 'nobody')
{
	like(try_as($role, q{SELECT * FROM invitetomedia.email_claim_all(10, '1 minute')}),
		qr/^42501 permission denied for function email_claim_all/, "3: $role cannot claim every tenant's mail");
	like(try_as($role, "SELECT invitetomedia.email_sent_all($tb, $queued->{message_id}, 0)"),
		qr/^42501 permission denied for function email_sent_all/, "3: $role cannot confirm another tenant's mail");
	like(try_as($role, "SELECT invitetomedia.email_failed_all($tb, $queued->{message_id}, 'x', 0)"),
		qr/^42501 permission denied for function email_failed_all/, "3: $role cannot fail another tenant's mail");
	like(try_as($role, "SELECT invitetomedia.email_release_all($tb, $queued->{message_id}, 0)"),
		qr/^42501 permission denied for function email_release_all/, "3: $role cannot release another tenant's mail");
}
is(sql("SELECT attempts || ' ' || (sent_at IS NULL) FROM invitetomedia.outbox WHERE tenant_id = $tb AND message_id = $queued->{message_id}"),
	'0 true', '3: globex\'s message is untouched');

# acme's own sender: its tenant's sites, not globex's mail
my $own = invite_at('acme-canvas', 'c5@people.example');
($rc, $log, $mails) = run_sender('app_a');
is($rc, 0, '3: acme\'s sender --once exits 0') or diag($log);
like($log, qr/may not execute email_claim_all: delivering its own tenant's mail only \(email_claim_sites\)/,
	'3: ... saying it delivers its own tenant\'s mail only');
is(join(',', map { $_->{to}[0][1] } @$mails), 'c5@people.example', '3: ... and delivering acme\'s message only');
is($mails->[0]{message_id} // '', "<itm-$own->{message_key}\@platform.example>",
	'3: ... with its site\'s identity (acme-canvas: --domain)');
is(sql("SELECT attempts FROM invitetomedia.outbox WHERE tenant_id = $tb AND message_id = $queued->{message_id}"),
	'0', '3: globex\'s message was not claimed');
is(sql("SELECT sent_at IS NOT NULL FROM invitetomedia.outbox WHERE tenant_id = $ta AND message_id = $own->{message_id}"),
	't', '3: acme\'s message is confirmed');

###########################################################################
# 4. the cross-tenant functions, called directly
###########################################################################
like(try_as('platform_sender', q{SELECT * FROM invitetomedia.email_claim_all(0, '1 minute')}),
	qr/^22023 email_claim_all: batch must be between 1 and 1000, not 0/, '4: a batch of 0: 22023');
like(try_as('platform_sender', q{SELECT * FROM invitetomedia.email_claim_all(10, '2 days')}),
	qr/^22023 email_claim_all: lease must be between 1 second and 1 day/, '4: a lease of 2 days: 22023');
like(try_as('platform_sender', q{SELECT invitetomedia.email_sent_all(NULL, 1, 1)}),
	qr/^22004 email_sent_all: tenant_id, message_id and claim_no must not be NULL/, '4: a NULL tenant: 22004');
like(try_as('platform_sender', q{SELECT invitetomedia.email_failed_all(1, 1, 'x', 1, NULL)}),
	qr/^22004 email_failed_all: tenant_id, message_id, claim_no and permanent must not be NULL/, '4: email_failed_all with NULL: 22004');
like(try_as('platform_sender', q{SELECT invitetomedia.email_release_all(1, NULL, 1)}),
	qr/^22004 email_release_all: /, '4: email_release_all with NULL: 22004');

my ($cid, $ctid, $cno) = split /\|/,
  as('platform_sender', q{SELECT message_id, tenant_id, claim_no FROM invitetomedia.email_claim_all(10, '1 minute')});
is("$cid $ctid", "$queued->{message_id} $tb", '4: email_claim_all claims globex\'s queued message');
is(as('platform_sender', "SELECT invitetomedia.email_sent_all($ta, $cid, $cno)"), 'f',
	'4: the same id named with another tenant: not confirmed');
is(as('platform_sender', "SELECT invitetomedia.email_release_all($tb, $cid, $cno + 1)"), 'f',
	'4: release under another claim number: refused');
my ($out, $stderr) = ('', '');
$node->psql('postgres', "SET ROLE platform_sender; SELECT invitetomedia.email_sent_all($tb, $cid, $cno + 1)",
	stdout => \$out, stderr => \$stderr);
is($out, 'f', '4: a superseded claim is not confirmed');
like($stderr, qr/WARNING:  claim \d+ of outbox message $cid of tenant $tb is superseded by claim $cno/,
	'4: ... with a WARNING naming the tenant');
is(as('platform_sender', "SELECT invitetomedia.email_release_all($tb, $cid, $cno)"), 't', '4: release of the claim');
is(sql("SELECT attempts || ' ' || (claimed_until IS NULL) || ' ' || (next_attempt_at <= now())"
	  . " FROM invitetomedia.outbox WHERE tenant_id = $tb AND message_id = $cid"),
	'0 true true', '4: ... gives its attempt back, due now');
(undef, undef, $cno) = split /\|/,
  as('platform_sender', q{SELECT message_id, tenant_id, claim_no FROM invitetomedia.email_claim_all(10, '1 minute')});
is(as('platform_sender', "SELECT invitetomedia.email_failed_all($tb, $cid, 'refused', $cno, true)"), 'dead',
	'4: a permanent failure: dead at once');
is(as('platform_sender', "SELECT invitetomedia.email_failed_all($tb, $cid, 'refused', $cno)"), '',
	'4: a message no longer queued: NULL');

done_testing();
